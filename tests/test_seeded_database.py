"""Plans and recall on 100,000 chunks across 10 tenants, queried as the application role.

The seeded database (tests/seeded_database.py) is built once and kept, because building its HNSW
index takes minutes. Each check runs the platform's own query functions through a Database
that also requests from PostgreSQL the plan of every statement they send.
"""

import asyncio
import re
import uuid

import asyncpg
import numpy as np
import pytest
from databases import Database

from db import chunks as chunk_queries
from db import documents as document_queries
from db.tenancy import tenant_transaction
from server.database import init_connection
from tests.seeded_database import SeededDatabase, ensure_seeded_database, random_unit_vectors

pytestmark = pytest.mark.shared_data

RECALL_QUERIES = 20
PAGE_SIZE = 20
# The plan must not read these tables sequentially; every listing and search has an index.
TENANT_TABLES = ("chunks", "documents")


class ExplainingDatabase(Database):
    """Runs each query as usual, after recording its EXPLAIN (ANALYZE) plan in `plans`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.plans: list[str] = []

    async def _explain(self, query: str, values: dict | None) -> None:
        rows = await super().fetch_all("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + query, values)
        self.plans.append("\n".join(row[0] for row in rows))

    async def fetch_all(self, query, values=None):
        await self._explain(query, values)
        return await super().fetch_all(query, values)

    async def fetch_one(self, query, values=None):
        await self._explain(query, values)
        return await super().fetch_one(query, values)

    async def fetch_val(self, query, values=None, column=0):
        await self._explain(query, values)
        return await super().fetch_val(query, values, column)


@pytest.fixture(scope="session")
def seeded(service_urls) -> SeededDatabase:
    return asyncio.run(ensure_seeded_database(service_urls["database_url"], service_urls["app_database_url"]))


def _plans_of(seeded: SeededDatabase, call) -> list[str]:
    """Run `call(db)` against the seeded database as the application role; return every plan."""

    async def run():
        db = ExplainingDatabase(seeded.app_url, min_size=1, max_size=1, init=init_connection)
        await db.connect()
        try:
            await call(db)
        finally:
            await db.disconnect()
        return db.plans

    return asyncio.run(run())


def _sequential_scans(plans: list[str]) -> list[str]:
    return [line.strip() for plan in plans for line in plan.splitlines()
            if re.search(rf"Seq Scan on ({'|'.join(TENANT_TABLES)})\b", line)]


def _cursor_of_row(seeded: SeededDatabase, tenant: uuid.UUID, offset: int) -> tuple:
    """The keyset (created_at, id) of the document that ends page offset / PAGE_SIZE, found as the owner."""

    async def run():
        connection = await asyncpg.connect(seeded.admin_url)
        try:
            row = await connection.fetchrow(
                "SELECT created_at, id FROM documents WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC"
                " OFFSET $2 LIMIT 1", tenant, offset - 1)
        finally:
            await connection.close()
        return row["created_at"], row["id"]

    return asyncio.run(run())


def test_document_list_first_page_uses_tenant_index(seeded):
    tenant = seeded.large_tenants[0]
    plans = _plans_of(seeded, lambda db: document_queries.list_documents(
        db, tenant_id=tenant, limit=PAGE_SIZE + 1, status=None, after=None))
    assert _sequential_scans(plans) == []
    assert "Index Scan using documents_tenant_created_idx" in plans[0]


def test_document_list_fiftieth_page_uses_tenant_index(seeded):
    tenant = seeded.large_tenants[0]
    after = _cursor_of_row(seeded, tenant, 49 * PAGE_SIZE)
    plans = _plans_of(seeded, lambda db: document_queries.list_documents(
        db, tenant_id=tenant, limit=PAGE_SIZE + 1, status=None, after=after))
    assert _sequential_scans(plans) == []
    assert "Index Scan using documents_tenant_created_idx" in plans[0]
    index_condition = next(line for line in plans[0].splitlines() if "Index Cond" in line)
    assert "tenant_id = " in index_condition
    assert "ROW(created_at, id) <" in index_condition


def test_document_list_by_rare_status_uses_status_index(seeded):
    """Every seeded document is ready, so listing the failed ones must not walk them all."""
    tenant = seeded.large_tenants[0]
    plans = _plans_of(seeded, lambda db: document_queries.list_documents(
        db, tenant_id=tenant, limit=PAGE_SIZE + 1, status="failed", after=None))
    assert _sequential_scans(plans) == []
    assert "documents_tenant_status_created_idx" in plans[0]


def test_keyword_search_matches_through_gin_index(seeded):
    tenant = seeded.large_tenants[1]
    plans = _plans_of(seeded, lambda db: chunk_queries.keyword_search(
        db, tenant_id=tenant, query="kalo mine", limit=40))
    assert _sequential_scans(plans) == []
    index_conditions = [line for line in plans[0].splitlines() if "Index Cond" in line]
    assert any("tsv @@" in line and "tenant_id =" in line for line in index_conditions), plans[0]


def test_vector_search_of_large_tenant_uses_indexes(seeded):
    tenant = seeded.large_tenants[2]
    query = random_unit_vectors(np.random.default_rng(11), 1, "clustered", seeded.tenants.index(tenant))[0]
    plans = _plans_of(seeded, lambda db: chunk_queries.vector_search(db, tenant_id=tenant, embedding=query, limit=40))
    assert _sequential_scans(plans) == []
    assert "chunks_tenant_document_idx" in plans[-1]


async def _hnsw_and_exact(db: ExplainingDatabase, tenant: uuid.UUID, query: np.ndarray) -> tuple[set, set]:
    exact = await chunk_queries.vector_search(db, tenant_id=tenant, embedding=query, limit=10)
    async with tenant_transaction(db, tenant):
        # For a tenant this small the planner rightly prefers the exact scan even on the HNSW
        # path. Forbidding the sort makes it walk the index, which is what this measures.
        await db.execute("SET LOCAL enable_sort = off")
        approximate = await chunk_queries.vector_search(db, tenant_id=tenant, embedding=query, limit=10,
                                                        exact_scan_max_chunks=0)
    return {hit["chunk_id"] for hit in exact}, {hit["chunk_id"] for hit in approximate}


def measure_filtered_recall(app_url: str, tenant: uuid.UUID, queries: np.ndarray) -> tuple[list[float], bool]:
    """Return top-10 recall of the HNSW path against the exact scan for each query, and whether
    every approximate search walked the HNSW index."""

    async def run():
        db = ExplainingDatabase(app_url, min_size=1, max_size=1, init=init_connection)
        await db.connect()
        recalls, walked_index = [], True
        try:
            for query in queries:
                exact, approximate = await _hnsw_and_exact(db, tenant, query)
                walked_index = walked_index and "Index Scan using chunks_embedding_hnsw_idx" in db.plans[-1]
                recalls.append(len(exact & approximate) / len(exact))
        finally:
            await db.disconnect()
        return recalls, walked_index

    return asyncio.run(run())


def test_small_tenant_hnsw_recall_at_least_095(seeded):
    queries = random_unit_vectors(np.random.default_rng(13), RECALL_QUERIES, "clustered", 0)
    recalls, walked_index = measure_filtered_recall(seeded.app_url, seeded.small_tenant, queries)
    assert walked_index
    assert float(np.mean(recalls)) >= 0.95, recalls


def test_small_tenant_search_returns_only_its_chunks(seeded):
    query = random_unit_vectors(np.random.default_rng(14), 1, "clustered", 0)[0]

    async def run():
        db = Database(seeded.app_url, min_size=1, max_size=1, init=init_connection)
        await db.connect()
        try:
            hits = await chunk_queries.vector_search(db, tenant_id=seeded.small_tenant, embedding=query, limit=50,
                                                     exact_scan_max_chunks=0)
        finally:
            await db.disconnect()
        connection = await asyncpg.connect(seeded.admin_url)
        try:
            owners = await connection.fetch("SELECT DISTINCT tenant_id FROM chunks WHERE id = ANY($1::uuid[])",
                                            [hit["chunk_id"] for hit in hits])
        finally:
            await connection.close()
        return hits, [row["tenant_id"] for row in owners]

    hits, owners = asyncio.run(run())
    assert len(hits) == 50
    assert owners == [seeded.small_tenant]
