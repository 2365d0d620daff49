"""Queries of the ingestion job, on a plain asyncpg connection.

Every query is scoped by tenant, and runs in a transaction that names the tenant for row-level
security.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg
import numpy as np

from db.tenancy import tenant_connection


async def load_document_for_ingestion(connection: asyncpg.Connection, *, tenant_id: UUID,
                                      document_id: UUID) -> asyncpg.Record | None:
    async with tenant_connection(connection, tenant_id):
        return await connection.fetchrow(
            "SELECT d.id, d.title, d.content_type, d.status, c.data FROM documents d"
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
