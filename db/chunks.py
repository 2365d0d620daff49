"""Search queries over chunks: pgvector cosine distance and PostgreSQL full text. Scoped by tenant.

Vector search picks its plan explicitly. When the chunks in scope are few (a small tenant, or a
filter down to a few documents), an exact scan over them is cheap and returns exactly the
nearest chunks. Otherwise the HNSW index is used with pgvector's iterative scan, which keeps
reading the index until enough rows pass the tenant filter, so a small tenant next to large
ones still gets `limit` hits.
"""

from __future__ import annotations

from uuid import UUID

import numpy as np
from databases import Database

from db.rows import as_dicts
from db.tenancy import tenant_read

# Up to this many chunks in scope, an exact scan (about 20 ms for 20k chunks of 384
# dimensions) beats the index and cannot miss a neighbour.
EXACT_SCAN_MAX_CHUNKS = 20_000
# Candidates read by the HNSW scan per query; higher is slower and closer to exact.
HNSW_EF_SEARCH = 100
HNSW_MAX_SCAN_TUPLES = 50_000

HIT_COLUMNS = "c.id AS chunk_id, c.document_id, d.title AS document_title, c.content"


def _scope(tenant_id: UUID, document_ids: list[UUID] | None, metadata: dict | None) -> tuple[str, dict]:
    """Return the WHERE clause shared by every search, limiting chunks to the tenant and filters."""
    conditions = ["c.tenant_id = :tenant_id"]
    values: dict = {"tenant_id": tenant_id}
    if document_ids is not None:
        conditions.append("c.document_id = ANY(:document_ids)")
        values["document_ids"] = document_ids
    if metadata:
        conditions.append("d.metadata @> CAST(:metadata AS jsonb)")
        values["metadata"] = metadata
    return " AND ".join(conditions), values


@tenant_read
async def count_chunks_in_scope(db: Database, *, tenant_id: UUID, document_ids: list[UUID] | None,
                                metadata: dict | None) -> int:
    conditions = ["tenant_id = :tenant_id", "status = 'ready'"]
    values: dict = {"tenant_id": tenant_id}
    if document_ids is not None:
        conditions.append("id = ANY(:document_ids)")
        values["document_ids"] = document_ids
    if metadata:
        conditions.append("metadata @> CAST(:metadata AS jsonb)")
        values["metadata"] = metadata
    return await db.fetch_val(
        f"SELECT coalesce(sum(chunk_count), 0) FROM documents WHERE {' AND '.join(conditions)}", values
    )


@tenant_read
async def vector_search(db: Database, *, tenant_id: UUID, embedding: np.ndarray, limit: int,
                        document_ids: list[UUID] | None = None, metadata: dict | None = None,
                        exact_scan_max_chunks: int = EXACT_SCAN_MAX_CHUNKS) -> list[dict]:
    """Return the `limit` chunks nearest to `embedding`, nearest first, with their cosine similarity."""
    where, values = _scope(tenant_id, document_ids, metadata)
    values.update({"embedding": embedding, "limit": limit})
    in_scope = await count_chunks_in_scope(db, tenant_id=tenant_id, document_ids=document_ids, metadata=metadata)
    if in_scope <= exact_scan_max_chunks:
        # "+ 0" keeps the planner off the HNSW index, whose operator expression no longer matches.
        records = await db.fetch_all(
            f"SELECT {HIT_COLUMNS}, 1 - (c.embedding <=> :embedding) AS similarity"
            f" FROM chunks c JOIN documents d ON d.id = c.document_id"
            f" WHERE {where} ORDER BY (c.embedding <=> :embedding) + 0 LIMIT :limit",
            values,
        )
        return as_dicts(records)
    async with db.transaction():
        await db.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
        await db.execute("SELECT set_config('hnsw.ef_search', :ef, true)", {"ef": str(max(HNSW_EF_SEARCH, limit))})
        await db.execute("SELECT set_config('hnsw.max_scan_tuples', :tuples, true)",
                         {"tuples": str(HNSW_MAX_SCAN_TUPLES)})
        # relaxed_order may return rows slightly out of order, so the outer query sorts again.
        records = await db.fetch_all(
            f"WITH nearest AS MATERIALIZED ("
            f" SELECT {HIT_COLUMNS}, c.embedding <=> :embedding AS distance"
            f" FROM chunks c JOIN documents d ON d.id = c.document_id"
            f" WHERE {where} ORDER BY c.embedding <=> :embedding LIMIT :limit)"
            f" SELECT chunk_id, document_id, document_title, content, 1 - distance AS similarity"
            f" FROM nearest ORDER BY distance",
            values,
        )
    return as_dicts(records)


@tenant_read
async def keyword_search(db: Database, *, tenant_id: UUID, query: str, limit: int,
                         document_ids: list[UUID] | None = None, metadata: dict | None = None) -> list[dict]:
    """Return up to `limit` chunks matching any of the query's words, best full-text rank first.

    plainto_tsquery joins the words with AND, which a natural-language question rarely meets in
    one chunk, so its operators are turned into OR and ts_rank_cd rewards chunks matching more.
    """
    where, values = _scope(tenant_id, document_ids, metadata)
    values.update({"query": query, "limit": limit})
    # The tenant_* views let the match use the (tenant_id, tsv) index under row-level security;
    # see db/migrations/0004_search_views.sql.
    records = await db.fetch_all(
        f"WITH q AS (SELECT to_tsquery('english', replace(plainto_tsquery('english', :query)::text, ' & ', ' | '))"
        f" AS query)"
        f" SELECT {HIT_COLUMNS}, ts_rank_cd(c.tsv, q.query) AS rank"
        f" FROM q, tenant_chunks c JOIN tenant_documents d ON d.id = c.document_id"
        f" WHERE {where} AND c.tsv @@ q.query ORDER BY rank DESC, c.id LIMIT :limit",
        values,
    )
    return as_dicts(records)


@tenant_read
async def document_chunks(db: Database, *, tenant_id: UUID, document_id: UUID, limit: int = 50) -> list[dict]:
    records = await db.fetch_all(
        "SELECT id AS chunk_id, ordinal, content FROM chunks"
        " WHERE tenant_id = :tenant_id AND document_id = :document_id ORDER BY ordinal LIMIT :limit",
        {"tenant_id": tenant_id, "document_id": document_id, "limit": limit},
    )
    return as_dicts(records)
