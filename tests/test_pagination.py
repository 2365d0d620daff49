"""Keyset pagination cursors over HTTP: each cursor pages only the list that issued it."""

import base64
import json

PAGE = {"limit": 1}


def upload_documents(api, user, count: int) -> list[str]:
    return [api.upload_text(user, f"Doc {n}", f"Pagination sample number {n}.").json()["document"]["id"]
            for n in range(count)]


def first_cursor(api, user, path: str, **params) -> str:
    response = api.http.get(path, headers=user["headers"], params={**PAGE, **params})
    assert response.status_code == 200, response.text
    cursor = response.json()["next_cursor"]
    assert cursor is not None
    return cursor


def assert_cursor_rejected(response) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert [detail["field"] for detail in error["details"]] == ["cursor"]


def chat(api, user, session_id: str) -> None:
    response = api.http.post("/chat", headers=user["headers"],
                             json={"message": "What does the handbook say about holidays?", "session_id": session_id})
    assert response.status_code == 200, response.text


def test_documents_cursor_rejected_by_sessions_list(api):
    user = api.register()
    upload_documents(api, user, 2)
    cursor = first_cursor(api, user, "/documents")

    response = api.http.get("/chat/sessions", headers=user["headers"], params={**PAGE, "cursor": cursor})

    assert_cursor_rejected(response)


def test_cursor_rejected_under_other_status_filter(api):
    user = api.register()
    upload_documents(api, user, 2)
    cursor = first_cursor(api, user, "/documents")

    response = api.http.get("/documents", headers=user["headers"],
                            params={**PAGE, "status": "ready", "cursor": cursor})

    assert_cursor_rejected(response)


def test_filtered_cursor_pages_same_filter(api, rq_worker):
    user = api.register()
    ids = upload_documents(api, user, 2)
    for document_id in ids:
        api.wait_for_document(user, document_id)
    cursor = first_cursor(api, user, "/documents", status="ready")

    response = api.http.get("/documents", headers=user["headers"],
                            params={**PAGE, "status": "ready", "cursor": cursor})

    assert response.status_code == 200, response.text
    assert [item["id"] for item in response.json()["items"]] == [ids[0]]


def test_messages_cursor_rejected_by_other_session(api):
    user = api.register()
    chat(api, user, "first-session")
    chat(api, user, "second-session")
    cursor = first_cursor(api, user, "/chat/sessions/first-session/messages")

    response = api.http.get("/chat/sessions/second-session/messages", headers=user["headers"],
                            params={**PAGE, "cursor": cursor})

    assert_cursor_rejected(response)


def test_sessions_cursor_rejected_by_documents_list(api):
    user = api.register()
    chat(api, user, "first-session")
    chat(api, user, "second-session")
    cursor = first_cursor(api, user, "/chat/sessions")

    response = api.http.get("/documents", headers=user["headers"], params={**PAGE, "cursor": cursor})

    assert_cursor_rejected(response)


def test_untagged_cursor_still_pages_documents(api):
    """Cursors issued before lists were tagged carry only the row's position, and they keep working."""
    user = api.register()
    ids = upload_documents(api, user, 2)
    newest = api.http.get(f"/documents/{ids[1]}", headers=user["headers"]).json()
    raw = json.dumps([newest["created_at"], newest["id"]]).encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")

    response = api.http.get("/documents", headers=user["headers"], params={**PAGE, "cursor": cursor})

    assert response.status_code == 200, response.text
    assert [item["id"] for item in response.json()["items"]] == [ids[0]]
