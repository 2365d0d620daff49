"""GET /usage reads the refreshed usage view, scoped to the caller's tenant."""

import asyncio
from datetime import datetime, timedelta, timezone

import asyncpg

from jobs.usage import refresh_usage_view


def _refresh(service_urls, monkeypatch) -> None:
    """Run the maintenance job's function as the RQ worker would, as the application role."""
    monkeypatch.setenv("DATABASE_URL", service_urls["app_database_url"])
    refresh_usage_view()


def _search(api, user, count: int) -> None:
    for n in range(count):
        response = api.http.post("/search", headers=user["headers"], json={"query": f"word{n}", "mode": "keyword"})
        assert response.status_code == 200, response.text


def test_usage_is_empty_until_the_view_is_refreshed(api):
    user = api.register()
    _search(api, user, 2)
    body = api.http.get("/usage", headers=user["headers"]).json()
    assert body["totals"] == {"documents": 0, "chunks": 0, "searches": 0, "chats": 0}
    assert body["items"] == []


def test_usage_shows_only_the_callers_counts(api, rq_worker, service_urls, monkeypatch):
    # Regression: this test expected no chunks, which held only until the session's RQ worker
    # started. Each document is now ingested before the view is refreshed, into one chunk.
    alice, bob = api.register(), api.register()
    uploads = [(alice, "one"), (alice, "two"), (bob, "three")]
    for user, title in uploads:
        response = api.upload_text(user, title, f"Text of document {title}.")
        assert response.status_code == 202, response.text
        assert api.wait_for_document(user, response.json()["document"]["id"])["status"] == "ready"
    _search(api, alice, 3)
    _search(api, bob, 1)
    chat = api.http.post("/chat", headers=bob["headers"], json={"message": "What is in document three?"})
    assert chat.status_code == 200, chat.text

    _refresh(service_urls, monkeypatch)

    today = datetime.now(timezone.utc).date().isoformat()
    alice_usage = api.http.get("/usage", headers=alice["headers"]).json()
    bob_usage = api.http.get("/usage", headers=bob["headers"]).json()
    assert alice_usage["totals"] == {"documents": 2, "chunks": 2, "searches": 3, "chats": 0}
    assert alice_usage["items"] == [{"day": today, "documents": 2, "chunks": 2, "searches": 3, "chats": 0}]
    assert bob_usage["totals"] == {"documents": 1, "chunks": 1, "searches": 1, "chats": 1}
    assert alice_usage["next_cursor"] is None


def test_usage_days_are_keyset_paginated(api, service_urls, monkeypatch):
    user = api.register()
    now = datetime.now(timezone.utc)
    days = [now - timedelta(days=offset) for offset in range(3)]

    async def backdate_events():
        connection = await asyncpg.connect(service_urls["database_url"])
        try:
            for moment in days:
                await connection.execute("INSERT INTO usage_events (tenant_id, kind, created_at) VALUES ($1, 'chat', $2)",
                                         user["tenant_id"], moment)
        finally:
            await connection.close()

    asyncio.run(backdate_events())
    _refresh(service_urls, monkeypatch)

    seen, cursor = [], None
    for _ in range(5):
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        body = api.http.get("/usage", headers=user["headers"], params=params).json()
        seen.extend(item["day"] for item in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [moment.date().isoformat() for moment in days]


def test_usage_rejects_a_malformed_cursor(api):
    user = api.register()
    response = api.http.get("/usage", headers=user["headers"], params={"cursor": "not-a-cursor"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_failed"
