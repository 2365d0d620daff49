"""Documents over HTTP: upload, duplicate detection, list, get, delete, jobs and progress events."""

import json
import time

import httpx

from tests.conftest import LOG_DIR

TEXT = ("Reciprocal rank fusion merges several rankings. Each item scores the sum of one over the "
        "constant plus its rank in every ranking, so items ranked well by several lists rise to the top.")


def test_json_upload_is_accepted_with_a_job(api, rq_worker):
    user = api.register()
    response = api.upload_text(user, "Fusion", TEXT, metadata={"team": "search"})
    assert response.status_code == 202
    body = response.json()
    assert body["job_id"]
    document = body["document"]
    assert document["status"] == "queued"
    assert document["content_type"] == "text/plain"
    assert document["bytes"] == len(TEXT.encode())
    assert document["metadata"] == {"team": "search"}
    assert document["error"] is None


def test_uploaded_document_becomes_ready_with_chunks(api, rq_worker):
    user = api.register()
    document_id = api.upload_text(user, "Fusion", TEXT).json()["document"]["id"]
    document = api.wait_for_document(user, document_id)
    assert document["status"] == "ready"
    assert document["chunk_count"] >= 1


def test_same_content_again_is_a_duplicate_and_enqueues_nothing(api, rq_worker):
    user = api.register()
    first = api.upload_text(user, "Fusion", TEXT)
    again = api.upload_text(user, "Fusion copy", TEXT)
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["document"]["id"] == first.json()["document"]["id"]
    assert "job_id" not in again.json()
    assert len(api.http.get("/documents", headers=user["headers"]).json()["items"]) == 1


def test_list_is_newest_first_with_keyset_pages(api, rq_worker):
    user = api.register()
    ids = [api.upload_text(user, f"Doc {n}", f"{TEXT} Number {n}.").json()["document"]["id"] for n in range(5)]
    seen = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.http.get("/documents", headers=user["headers"], params=params).json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


def test_list_filters_by_status(api, rq_worker):
    user = api.register()
    document_id = api.upload_text(user, "Fusion", TEXT).json()["document"]["id"]
    api.wait_for_document(user, document_id)
    ready = api.http.get("/documents", headers=user["headers"], params={"status": "ready"}).json()["items"]
    queued = api.http.get("/documents", headers=user["headers"], params={"status": "queued"}).json()["items"]
    assert [item["id"] for item in ready] == [document_id]
    assert queued == []


def test_delete_removes_document_and_its_search_hits(api, rq_worker):
    user = api.register()
    document_id = api.upload_text(user, "Fusion", TEXT).json()["document"]["id"]
    api.wait_for_document(user, document_id)
    query = {"query": "reciprocal rank fusion"}
    assert api.http.post("/search", headers=user["headers"], json=query).json()["results"]
    assert api.http.delete(f"/documents/{document_id}", headers=user["headers"]).status_code == 204
    assert api.http.get(f"/documents/{document_id}", headers=user["headers"]).status_code == 404
    assert api.http.post("/search", headers=user["headers"], json=query).json()["results"] == []


def test_job_reports_document_and_finishes(api, rq_worker):
    user = api.register()
    body = api.upload_text(user, "Fusion", TEXT).json()
    api.wait_for_document(user, body["document"]["id"])
    job = api.wait_for_job(user, body["job_id"])
    assert job["id"] == body["job_id"]
    assert job["kind"] == "ingestion"
    assert job["document_id"] == body["document"]["id"]
    assert job["status"] == "finished"
    assert job["progress"] == 1.0
    assert job["attempts"] == 1


def test_unknown_job_is_not_found(api):
    user = api.register()
    assert api.http.get("/jobs/00000000-0000-0000-0000-000000000000", headers=user["headers"]).status_code == 404


def _read_events(api, user, document_id: str) -> list[tuple[str, dict]]:
    events = []
    with api.http.stream("GET", f"/documents/{document_id}/events", headers=user["headers"],
                         timeout=httpx.Timeout(120)) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: "):])))
    return events


def test_events_stream_ends_with_ready(api, rq_worker):
    user = api.register()
    document_id = api.upload_text(user, "Fusion", TEXT * 30).json()["document"]["id"]
    events = _read_events(api, user, document_id)
    names = [name for name, _ in events]
    assert names[-1] == "ready"
    assert set(names[:-1]) <= {"progress"}
    progress = [data["progress"] for name, data in events if name == "progress"]
    assert progress == sorted(progress)
    assert events[-1][1]["chunks_done"] == events[-1][1]["chunks_total"] >= 1


def test_events_of_a_failed_document_end_with_failed(api, rq_worker):
    user = api.register()
    document_id = api.upload_text(user, "Only punctuation", "... --- !!! ???").json()["document"]["id"]
    events = _read_events(api, user, document_id)
    assert events[-1][0] == "failed"
    assert events[-1][1]["error"]


def test_delete_ends_open_events_stream_and_stops_ingestion(api, rq_worker):
    # The stream kept sending pings after a DELETE, and the worker went on embedding the
    # deleted document to its last chunk.
    user = api.register()
    text = " ".join(f"Paragraph {index}. {TEXT}" for index in range(500))
    document_id = api.upload_text(user, "Long fusion notes", text).json()["document"]["id"]
    events = []
    deleted = False
    with api.http.stream("GET", f"/documents/{document_id}/events", headers=user["headers"],
                         timeout=httpx.Timeout(60)) as response:
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: "):])))
                # Deleted once the first batch is embedded, while the job is still at work.
                if not deleted and name == "progress" and events[-1][1]["chunks_done"] > 0:
                    assert api.http.delete(f"/documents/{document_id}", headers=user["headers"]).status_code == 204
                    deleted = True
    assert events[-1] == ("failed", {"status": "failed", "error": "The document was deleted."})
    worker_log = LOG_DIR / "worker.log"
    deadline = time.monotonic() + 60
    stopped = f"ingestion stopped reason=document_deleted document_id={document_id}"
    while stopped not in worker_log.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert stopped in worker_log.read_text(errors="replace")
