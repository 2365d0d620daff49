"""Queries of the ingestion job, on a plain asyncpg connection. Every query is scoped by tenant."""

from __future__ import annotations

from uuid import UUID

import asyncpg
import numpy as np


async def load_document_for_ingestion(connection: asyncpg.Connection, *, tenant_id: UUID,
                                      document_id: UUID) -> asyncpg.Record | None:
    return await connection.fetchrow(
        "SELECT d.id, d.title, d.content_type, d.status, c.data FROM documents d"
        " JOIN document_contents c ON c.document_id = d.id"
        " WHERE d.id = $1 AND d.tenant_id = $2",
        document_id, tenant_id,
    )


async def set_status(connection: asyncpg.Connection, *, tenant_id: UUID, document_id: UUID, status: str,
                     error: str | None = None) -> None:
    await connection.execute(
        "UPDATE documents SET status = $3, error = $4, updated_at = now() WHERE id = $1 AND tenant_id = $2",
        document_id, tenant_id, status, error,
    )


async def replace_chunks(connection: asyncpg.Connection, *, tenant_id: UUID, document_id: UUID,
                         contents: list[str], token_counts: list[int], embeddings: np.ndarray) -> bool:
    """Replace the document's chunks and mark it ready, in one transaction.

    Returns False, writing nothing, when the document was deleted while it was being ingested.
    A retried job deletes what an earlier attempt wrote, so each chunk exists exactly once.
    """
    async with connection.transaction():
        locked = await connection.fetchval(
            "SELECT id FROM documents WHERE id = $1 AND tenant_id = $2 FOR UPDATE", document_id, tenant_id
        )
        if locked is None:
            return False
        await connection.execute("DELETE FROM chunks WHERE document_id = $1 AND tenant_id = $2",
                                 document_id, tenant_id)
        await connection.copy_records_to_table(
            "chunks",
            columns=["tenant_id", "document_id", "ordinal", "content", "token_count", "embedding"],
            records=[
                (tenant_id, document_id, ordinal, content, tokens, embeddings[ordinal])
                for ordinal, (content, tokens) in enumerate(zip(contents, token_counts))
            ],
        )
        await connection.execute(
            "UPDATE documents SET status = 'ready', error = NULL, chunk_count = $3, updated_at = now()"
            " WHERE id = $1 AND tenant_id = $2",
            document_id, tenant_id, len(contents),
        )
    return True
