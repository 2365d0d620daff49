"""Vector search scoped to a small tenant next to a large one, through the HNSW index and exactly."""

import asyncio
import uuid

import numpy as np
import pytest
from databases import Database

from db.chunks import vector_search
from server.database import init_connection
from tests.conftest import reset_state

DIMENSIONS = 384
LARGE_TENANT_CHUNKS = 20_000
SMALL_TENANT_CHUNKS = 200  # 1% of the large tenant

HNSW_INDEX = "chunks_embedding_hnsw_idx"

pytestmark = pytest.mark.shared_data


async def _seed(connection, tenant_id: uuid.UUID, count: int, rng: np.random.Generator) -> uuid.UUID:
    await connection.execute("INSERT INTO tenants (id, name) VALUES ($1, $2)", tenant_id, f"tenant {tenant_id}")
    document_id = uuid.uuid4()
    await connection.execute(
        "INSERT INTO documents (id, tenant_id, title, status, content_type, bytes, content_sha256, chunk_count)"
        " VALUES ($1, $2, 'seeded', 'ready', 'text/plain', 0, $3, $4)",
        document_id, tenant_id, uuid.uuid4().hex, count,
    )
    vectors = rng.standard_normal((count, DIMENSIONS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    await connection.copy_records_to_table(
        "chunks", columns=["tenant_id", "document_id", "ordinal", "content", "token_count", "embedding"],
        records=[(tenant_id, document_id, n, f"chunk {n}", 2, vectors[n]) for n in range(count)],
    )
    return document_id


@pytest.fixture(scope="module")
def seeded(service_urls):
    """Seed the two tenants once for the module; building their HNSW entries takes a while."""
    reset_state(service_urls)
    db_url = service_urls["database_url"]
    large, small = uuid.uuid4(), uuid.uuid4()
    documents = {}

    async def seed():
        db = Database(db_url, min_size=1, max_size=2, init=init_connection)
        await db.connect()
        async with db.connection() as connection:
            raw = connection.raw_connection
            rng = np.random.default_rng(7)
            # Inserting rows one by one into an HNSW index is slow; building it afterwards is not.
            definition = await raw.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = $1", HNSW_INDEX)
            await raw.execute(f"DROP INDEX {HNSW_INDEX}")
            try:
                documents[large] = await _seed(raw, large, LARGE_TENANT_CHUNKS, rng)
                documents[small] = await _seed(raw, small, SMALL_TENANT_CHUNKS, rng)
            finally:
                await raw.execute(definition)
            await raw.execute("ANALYZE chunks")
        await db.disconnect()

    asyncio.run(seed())
    return db_url, large, small, documents


def _search(db_url, tenant_id, query, exact_scan_max_chunks):
    async def run():
        db = Database(db_url, min_size=1, max_size=2, init=init_connection)
        await db.connect()
        try:
            return await vector_search(db, tenant_id=tenant_id, embedding=query, limit=10,
                                       exact_scan_max_chunks=exact_scan_max_chunks)
        finally:
            await db.disconnect()

    return asyncio.run(run())


def test_small_tenant_gets_limit_hits_through_the_index(seeded):
    db_url, _, small, _ = seeded
    rng = np.random.default_rng(11)
    recalls = []
    for _ in range(5):
        query = rng.standard_normal(DIMENSIONS).astype(np.float32)
        query /= np.linalg.norm(query)
        exact = _search(db_url, small, query, exact_scan_max_chunks=10**9)
        indexed = _search(db_url, small, query, exact_scan_max_chunks=0)
        assert len(indexed) == 10
        similarities = [hit["similarity"] for hit in indexed]
        assert similarities == sorted(similarities, reverse=True)
        recalls.append(len({hit["chunk_id"] for hit in exact} & {hit["chunk_id"] for hit in indexed}) / 10)
    print(f"small-tenant recall@10 through HNSW with iterative scan: {np.mean(recalls):.2f}")
    assert np.mean(recalls) >= 0.9


def test_search_returns_only_the_tenants_chunks(seeded):
    db_url, large, small, documents = seeded
    query = np.ones(DIMENSIONS, dtype=np.float32) / np.sqrt(DIMENSIONS)
    for tenant_id, exact_scan_max_chunks in ((small, 10**9), (small, 0), (large, 0)):
        hits = _search(db_url, tenant_id, query, exact_scan_max_chunks)
        assert len(hits) == 10
        assert {hit["document_id"] for hit in hits} == {documents[tenant_id]}
