"""Queries of the ingestion job, on a plain asyncpg connection.

Every query is scoped by tenant, and runs in a transaction that names the tenant for row-level
security.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg
import numpy as np

from db.tenancy import tenant_connection, tenant_read


async def load_document_for_ingestion(connection: asyncpg.Connection, *, tenant_id: UUID,
                                      document_id: UUID) -> asyncpg.Record | None:
    async with tenant_connection(connection, tenant_id):
        return await connection.fetchrow(
            "SELECT d.id, d.title, d.content_type, d.status, d.content_sha256, c.data FROM documents d"
            " JOIN document_contents c ON c.document_id = d.id"
            " WHERE d.id = $1 AND d.tenant_id = $2",
            document_id, tenant_id,
        )


async def set_status(connection: asyncpg.Connection, *, tenant_id: UUID, document_id: UUID, status: str,
                     error: str | None = None) -> None:
    async with tenant_connection(connection, tenant_id):
        await connection.execute(
            "UPDATE documents SET status = $3, error = $4, updated_at = now() WHERE id = $1 AND tenant_id = $2",
            document_id, tenant_id, status, error,
        )


async def replace_chunks(connection: asyncpg.Connection, *, tenant_id: UUID, document_id: UUID,
                         contents: list[str], token_counts: list[int], embeddings: np.ndarray) -> bool:
    """Replace the document's chunks and mark it ready, in one transaction.

    Returns False, writing nothing, when the document was deleted while it was being ingested.
    A retried job deletes what an earlier attempt wrote, so each chunk exists exactly once.
    PostgreSQL refuses COPY into a table with row-level security, so the rows are copied into a
    temporary table and inserted from there, where the policies check them.
    """
    async with tenant_connection(connection, tenant_id):
        locked = await connection.fetchval(
            "SELECT id FROM documents WHERE id = $1 AND tenant_id = $2 FOR UPDATE", document_id, tenant_id
        )
        if locked is None:
            return False
        await connection.execute("DELETE FROM chunks WHERE document_id = $1 AND tenant_id = $2",
                                 document_id, tenant_id)
        await connection.execute(
            "CREATE TEMPORARY TABLE new_chunks (ordinal integer, content text, token_count integer,"
            " embedding vector(384)) ON COMMIT DROP"
        )
        await connection.copy_records_to_table(
            "new_chunks",
            columns=["ordinal", "content", "token_count", "embedding"],
            records=[
                (ordinal, content, tokens, embeddings[ordinal])
                for ordinal, (content, tokens) in enumerate(zip(contents, token_counts))
            ],
        )
        await connection.execute(
            "INSERT INTO chunks (tenant_id, document_id, ordinal, content, token_count, embedding)"
            " SELECT $1, $2, ordinal, content, token_count, embedding FROM new_chunks",
            tenant_id, document_id,
        )
        await connection.execute(
            "UPDATE documents SET status = 'ready', error = NULL, chunk_count = $3, updated_at = now()"
            " WHERE id = $1 AND tenant_id = $2",
            document_id, tenant_id, len(contents),
        )
    return True


async def find_unfinished_documents(connection: asyncpg.Connection, *, idle_seconds: float,
                                    limit: int) -> list[asyncpg.Record]:
    """Return documents of every tenant still queued or processing, unchanged for `idle_seconds`.

    The maintenance sweep is the one caller that reads across tenants.
    """
    # Row-level security hides every tenant's rows from a connection without a tenant, so the
    # cross-tenant read goes through a function that returns only what the sweep needs.
    return await connection.fetch("SELECT id, tenant_id, status, job_id FROM app_unfinished_documents($1, $2)",
                                  float(idle_seconds), limit)


@tenant_read
async def count_unfinished_for_upload(db, *, tenant_id: UUID, content_sha256: str) -> tuple[int, bool]:
    """Return (documents of the tenant queued or processing, whether `content_sha256` is already stored).

    `db` is the web server's `databases.Database`. An upload of stored content is a duplicate and
    enqueues nothing, so the per-tenant cap does not apply to it.
    """
    record = await db.fetch_one(
        "SELECT (SELECT count(*) FROM documents"
        "        WHERE tenant_id = :tenant_id AND status IN ('queued', 'processing')) AS unfinished,"
        " EXISTS (SELECT 1 FROM documents WHERE tenant_id = :tenant_id AND content_sha256 = :sha) AS duplicate",
        {"tenant_id": tenant_id, "sha": content_sha256},
    )
    return int(record._mapping["unfinished"]), bool(record._mapping["duplicate"])


async def is_unfinished(connection: asyncpg.Connection, *, tenant_id: UUID, document_id: UUID) -> bool:
    async with tenant_connection(connection, tenant_id):
        return bool(await connection.fetchval(
            "SELECT true FROM documents WHERE id = $1 AND tenant_id = $2 AND status IN ('queued', 'processing')",
            document_id, tenant_id,
        ))


async def fail_if_unfinished(connection: asyncpg.Connection, *, tenant_id: UUID, document_id: UUID,
                             error: str) -> bool:
    """Mark the document failed unless it is already ready or failed; return whether it was marked."""
    async with tenant_connection(connection, tenant_id):
        marked = await connection.fetchval(
            "UPDATE documents SET status = 'failed', error = $3, updated_at = now()"
            " WHERE id = $1 AND tenant_id = $2 AND status IN ('queued', 'processing') RETURNING id",
            document_id, tenant_id, error,
        )
    return marked is not None
