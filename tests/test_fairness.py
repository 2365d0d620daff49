"""Fair ingestion across tenants, against the session's live server and real RQ worker.

One tenant queues a backlog of tiny documents, then another tenant uploads one. With fair
dispatch the second tenant's document waits only for the jobs already in the RQ queue
(INGESTION_DISPATCH_WINDOW) and the one running, never for the whole backlog.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

BACKLOG_DOCUMENTS = 30
# INGESTION_DISPATCH_WINDOW of the session's server, left at its default.
DISPATCH_WINDOW = 2
# A guard against a hung test on a loaded machine, not a measurement.
READY_TIMEOUT_SECONDS = 600


def count_ready_between(db_url: str, tenant_id: str, after_document_id: str) -> tuple[int, int]:
    """Return (documents of `tenant_id` made ready after the other document was created and no later
    than it was made ready, documents of `tenant_id` ready by then)."""

    async def read() -> tuple[int, int]:
        connection = await asyncpg.connect(db_url)
        try:
            row = await connection.fetchrow(
                "SELECT count(*) FILTER (WHERE d.updated_at > o.created_at) AS between,"
                "       count(*) AS before"
                " FROM documents d, documents o"
                " WHERE o.id = $2 AND d.tenant_id = $1 AND d.status = 'ready' AND d.updated_at <= o.updated_at",
                uuid.UUID(tenant_id), uuid.UUID(after_document_id))
        finally:
            await connection.close()
        return row["between"], row["before"]

    return asyncio.run(read())


def test_single_document_not_starved_by_backlog(api, rq_worker, db_url):
    busy, other = api.register(), api.register()
    for index in range(BACKLOG_DOCUMENTS):
        response = api.upload_text(busy, f"Backlog {index}", f"Backlog note {index} {uuid.uuid4().hex}.")
        assert response.status_code == 202, response.text

    response = api.upload_text(other, "Single", f"A single note {uuid.uuid4().hex}.")
    assert response.status_code == 202, response.text
    document = api.wait_for_document(other, response.json()["document"]["id"], timeout=READY_TIMEOUT_SECONDS)

    assert document["status"] == "ready"
    ready_while_waiting, ready_before = count_ready_between(db_url, busy["tenant_id"], document["id"])
    # The running job and the ones already in the RQ queue go first; the rest of the backlog waits.
    assert ready_while_waiting <= DISPATCH_WINDOW + 1
    assert ready_before < BACKLOG_DOCUMENTS
