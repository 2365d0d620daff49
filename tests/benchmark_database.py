"""Database latency and filtered recall on 100,000 chunks across 10 tenants.

    python -m tests.benchmark_database [--data-dir var/bench] [--layout clustered] [--queries 40]

It starts (or reuses) the embedded PostgreSQL under --data-dir, builds the seeded database of
tests/seeded_database.py unless a complete one is there (several minutes, once), and times the
platform's query functions as the application role, under row-level security, one at a time:

- search per mode, as server/search.py composes them, with precomputed query vectors, so the
  times are the database's alone (encoding a query with the model adds about 10 to 30 ms);
- the document list at the first page and at the 50th (keyset cursor), against the same
  50th page fetched with OFFSET as the baseline;
- top-10 recall of the HNSW path for the tenant holding 1% of the chunks, against an exact scan.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import numpy as np
from databases import Database

from db import chunks as chunk_queries
from db import documents as document_queries
from db import embedded
from db.roles import ensure_app_role
from db.tenancy import tenant_transaction
from server.database import init_connection
from server.search import CANDIDATE_FACTOR, fuse
from tests.seeded_database import LAYOUTS, SeededDatabase, ensure_seeded_database, random_unit_vectors, vocabulary
from tests.test_seeded_database import measure_filtered_recall

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 10
PAGE_SIZE = 20
PAGE = 50


def percentiles(samples: list[float]) -> tuple[float, float]:
    milliseconds = np.array(samples) * 1000
    return float(np.percentile(milliseconds, 50)), float(np.percentile(milliseconds, 95))


async def timed(samples: list[float], work) -> None:
    started = time.perf_counter()
    await work()
    samples.append(time.perf_counter() - started)


async def search_latencies(db: Database, seeded: SeededDatabase, vectors: np.ndarray, words: list[str]) -> dict:
    rng = np.random.default_rng(3)
    samples: dict[str, list[float]] = {"vector": [], "keyword": [], "hybrid": []}
    for number, vector in enumerate(vectors):
        tenant = seeded.tenants[number % len(seeded.tenants)]
        text = " ".join(rng.choice(words, size=3))

        async def vector_only():
            await chunk_queries.vector_search(db, tenant_id=tenant, embedding=vector, limit=LIMIT)

        async def keyword_only():
            await chunk_queries.keyword_search(db, tenant_id=tenant, query=text, limit=LIMIT)

        async def hybrid():
            candidates = LIMIT * CANDIDATE_FACTOR
            by_vector = await chunk_queries.vector_search(db, tenant_id=tenant, embedding=vector, limit=candidates)
            by_keyword = await chunk_queries.keyword_search(db, tenant_id=tenant, query=text, limit=candidates)
            fuse([by_vector, by_keyword], LIMIT)

        await timed(samples["vector"], vector_only)
        await timed(samples["keyword"], keyword_only)
        await timed(samples["hybrid"], hybrid)
    return {mode: percentiles(values) for mode, values in samples.items()}


async def list_latencies(db: Database, seeded: SeededDatabase, rounds: int) -> dict:
    samples: dict[str, list[float]] = {"first page": [], "page 50, keyset": [], "page 50, OFFSET (baseline)": []}
    for number in range(rounds):
        tenant = seeded.large_tenants[number % len(seeded.large_tenants)]
        async with tenant_transaction(db, tenant):
            cursor_row = await db.fetch_one(
                "SELECT created_at, id FROM documents WHERE tenant_id = :tenant ORDER BY created_at DESC, id DESC"
                " OFFSET :offset LIMIT 1", {"tenant": tenant, "offset": (PAGE - 1) * PAGE_SIZE - 1})
        after = (cursor_row._mapping["created_at"], cursor_row._mapping["id"])

        async def first_page():
            await document_queries.list_documents(db, tenant_id=tenant, limit=PAGE_SIZE + 1, status=None, after=None)

        async def keyset_page():
            await document_queries.list_documents(db, tenant_id=tenant, limit=PAGE_SIZE + 1, status=None, after=after)

        async def offset_page():
            async with tenant_transaction(db, tenant):
                await db.fetch_all(
                    f"SELECT {document_queries.DOCUMENT_COLUMNS} FROM documents WHERE tenant_id = :tenant"
                    " ORDER BY created_at DESC, id DESC OFFSET :offset LIMIT :limit",
                    {"tenant": tenant, "offset": (PAGE - 1) * PAGE_SIZE, "limit": PAGE_SIZE + 1})

        await timed(samples["first page"], first_page)
        await timed(samples["page 50, keyset"], keyset_page)
        await timed(samples["page 50, OFFSET (baseline)"], offset_page)
    return {name: percentiles(values) for name, values in samples.items()}


async def measure(seeded: SeededDatabase, layout: str, queries: int) -> dict:
    db = Database(seeded.app_url, min_size=1, max_size=1, init=init_connection)
    await db.connect()
    try:
        rng = np.random.default_rng(21)
        # Query number n is for tenant n mod 10, and lies near that tenant's topics.
        vectors = np.concatenate([random_unit_vectors(rng, 1, layout, number % len(seeded.tenants))
                                  for number in range(queries)])
        words = vocabulary(np.random.default_rng(2026))
        # One warm-up pass, so the first figures do not include loading the indexes from disk.
        await search_latencies(db, seeded, vectors[: len(seeded.tenants)], words)
        return {"search": await search_latencies(db, seeded, vectors, words),
                "list": await list_latencies(db, seeded, queries)}
    finally:
        await db.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT / "var" / "bench"),
                        help="folder of the embedded PostgreSQL (default var/bench)")
    parser.add_argument("--layout", choices=LAYOUTS, default="clustered", help="how the seeded vectors lie")
    parser.add_argument("--queries", type=int, default=40, help="timed calls per mode and page (default 40)")
    args = parser.parse_args()

    admin_url = embedded.ensure_postgres(args.data_dir)
    app_url = asyncio.run(ensure_app_role(admin_url, Path(args.data_dir) / "postgres_app.password"))
    started = time.perf_counter()
    seeded = asyncio.run(ensure_seeded_database(admin_url, app_url, args.layout))
    print(f"seeded database ready in {time.perf_counter() - started:.0f} s ({args.layout} vectors)")

    figures = asyncio.run(measure(seeded, args.layout, args.queries))
    print(f"\n| search mode ({args.queries} queries, limit {LIMIT}) | p50 ms | p95 ms |\n|---|---|---|")
    for mode, (p50, p95) in figures["search"].items():
        print(f"| {mode} | {p50:.1f} | {p95:.1f} |")
    print(f"\n| document list ({PAGE_SIZE} per page) | p50 ms | p95 ms |\n|---|---|---|")
    for name, (p50, p95) in figures["list"].items():
        print(f"| {name} | {p50:.2f} | {p95:.2f} |")
    keyset, offset = figures["list"]["page 50, keyset"][0], figures["list"]["page 50, OFFSET (baseline)"][0]
    first = figures["list"]["first page"][0]
    print(f"\npage 50 / first page (keyset): {keyset / first:.2f}; keyset / OFFSET at page 50: {keyset / offset:.2f}")

    queries = random_unit_vectors(np.random.default_rng(13), args.queries, args.layout, 0)
    recalls, walked_index = measure_filtered_recall(seeded.app_url, seeded.small_tenant, queries)
    print(f"\nfiltered top-10 recall, tenant with 1% of the chunks, HNSW path against exact scan: "
          f"mean {np.mean(recalls):.3f}, min {np.min(recalls):.2f} over {len(recalls)} queries"
          f"{'' if walked_index else ' (some searches did not walk the HNSW index)'}")


if __name__ == "__main__":
    main()
