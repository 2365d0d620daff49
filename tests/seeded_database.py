"""A database of 100,000 chunks across 10 tenants, for index, recall and latency checks.

It is a separate database on the test PostgreSQL, with the platform's schema, seeded with random
unit vectors and text drawn from a made-up vocabulary. Seeding takes several minutes (most of it
building the HNSW index), so a seeded database is kept and reused while its row counts match.
One tenant has 1% of the chunks, and each of the nine others has 11%.

Two layouts of vectors exist. `clustered` draws each vector near one of TOPICS random topic
centres, as sentence embeddings gather around subjects. Each tenant writes about its own
TOPICS_PER_TENANT of them (tenants may share some), and a test query for a tenant lies near one
of its topics. `uniform` draws them uniformly on the
sphere, where in 384 dimensions every vector is nearly as far from a query as every other: the
worst case for an approximate index, and unlike real embeddings.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector

from db.migrate import apply_migrations
from db.roles import role_of

SEEDED_DATABASE_PREFIX = "ragplatform_seeded_"
LAYOUTS = ("clustered", "uniform")
TOPICS = 200
TOPICS_PER_TENANT = 20
# Spread of a clustered vector around its topic centre, per dimension, before normalising. With
# 0.05 in 384 dimensions a vector's cosine similarity to its centre is about 0.7.
TOPIC_SPREAD = 0.05
DIMENSIONS = 384
TENANTS = 10
TOTAL_CHUNKS = 100_000
SMALL_TENANT_CHUNKS = TOTAL_CHUNKS // 100
CHUNKS_PER_DOCUMENT = 10
WORDS_PER_CHUNK = 40
VOCABULARY_SIZE = 3000
HNSW_INDEX = "chunks_embedding_hnsw_idx"
# Fixed ids, so that a kept database is recognised and its tenants found again.
TENANT_NAMESPACE = uuid.UUID("5f0c1a8e-3a43-4b8e-9a51-6d3f2f4c9b10")


@dataclass(frozen=True)
class SeededDatabase:
    admin_url: str
    app_url: str
    small_tenant: uuid.UUID
    large_tenants: list[uuid.UUID]

    @property
    def tenants(self) -> list[uuid.UUID]:
        return [self.small_tenant, *self.large_tenants]


def tenant_ids() -> list[uuid.UUID]:
    return [uuid.uuid5(TENANT_NAMESPACE, f"tenant-{index}") for index in range(TENANTS)]


def chunk_counts() -> list[int]:
    large = (TOTAL_CHUNKS - SMALL_TENANT_CHUNKS) // (TENANTS - 1)
    return [SMALL_TENANT_CHUNKS] + [large] * (TENANTS - 1)


def vocabulary(rng: np.random.Generator) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "de", "fa", "go", "hu", "ji", "pe", "zu", "ra"]
    words = set()
    while len(words) < VOCABULARY_SIZE:
        words.add("".join(rng.choice(syllables, size=rng.integers(2, 5))))
    return sorted(words)


def _normalised(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def topic_centres() -> np.ndarray:
    """The same centres for seeding and for the queries of tests and benchmarks."""
    return _normalised(np.random.default_rng(404).standard_normal((TOPICS, DIMENSIONS)))


def tenant_topics(tenant_index: int) -> np.ndarray:
    return np.random.default_rng(1000 + tenant_index).choice(TOPICS, size=TOPICS_PER_TENANT, replace=False)


def random_unit_vectors(rng: np.random.Generator, count: int, layout: str, tenant_index: int) -> np.ndarray:
    """Draw `count` unit vectors as the tenant's chunks lie; test queries are drawn the same way."""
    if layout == "uniform":
        return _normalised(rng.standard_normal((count, DIMENSIONS)))
    centres = topic_centres()[rng.choice(tenant_topics(tenant_index), size=count)]
    return _normalised(centres + TOPIC_SPREAD * rng.standard_normal((count, DIMENSIONS)))


def _url_for(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + database


async def _is_seeded(admin_url: str) -> bool:
    try:
        connection = await asyncpg.connect(admin_url)
    except asyncpg.InvalidCatalogNameError:
        return False
    try:
        if await connection.fetchval("SELECT to_regclass('chunks') IS NULL"):
            return False
        chunks = await connection.fetchval("SELECT count(*) FROM chunks")
        index = await connection.fetchval("SELECT 1 FROM pg_indexes WHERE indexname = $1", HNSW_INDEX)
        return chunks == TOTAL_CHUNKS and index == 1
    finally:
        await connection.close()


async def _recreate_database(server_admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(server_admin_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def _seed(admin_url: str, layout: str) -> None:
    rng = np.random.default_rng(2026)
    words = np.array(vocabulary(rng))
    connection = await asyncpg.connect(admin_url)
    await register_vector(connection)
    try:
        # Building the HNSW index once after the rows is far faster than inserting into it.
        definition = await connection.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = $1", HNSW_INDEX)
        await connection.execute(f"DROP INDEX {HNSW_INDEX}")
        now = datetime.now(timezone.utc)
        tenants = tenant_ids()
        await connection.executemany("INSERT INTO tenants (id, name) VALUES ($1, $2)",
                                     [(tenant, f"seeded {n}") for n, tenant in enumerate(tenants)])
        for tenant_index, (tenant, count) in enumerate(zip(tenants, chunk_counts())):
            documents, chunks = [], []
            vectors = random_unit_vectors(rng, count, layout, tenant_index)
            for document_index in range(count // CHUNKS_PER_DOCUMENT):
                document_id = uuid.uuid4()
                created_at = now - timedelta(minutes=document_index)
                sha = hashlib.sha256(document_id.bytes).hexdigest()
                documents.append((document_id, tenant, f"document {document_index}", "ready", "text/plain", 1000,
                                  sha, CHUNKS_PER_DOCUMENT, created_at, created_at))
                for ordinal in range(CHUNKS_PER_DOCUMENT):
                    row = document_index * CHUNKS_PER_DOCUMENT + ordinal
                    content = " ".join(rng.choice(words, size=WORDS_PER_CHUNK))
                    chunks.append((tenant, document_id, ordinal, content, WORDS_PER_CHUNK, vectors[row], created_at))
            await connection.copy_records_to_table(
                "documents", records=documents,
                columns=["id", "tenant_id", "title", "status", "content_type", "bytes", "content_sha256",
                         "chunk_count", "created_at", "updated_at"])
            await connection.copy_records_to_table(
                "chunks", records=chunks,
                columns=["tenant_id", "document_id", "ordinal", "content", "token_count", "embedding", "created_at"])
        await connection.execute(definition)
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()


async def ensure_seeded_database(server_admin_url: str, app_url: str, layout: str = "clustered") -> SeededDatabase:
    """Create and seed the database unless a complete one exists; grant the application role on it."""
    if layout not in LAYOUTS:
        raise ValueError(f"vector layout {layout!r} is unknown; use one of {', '.join(LAYOUTS)}")
    name = SEEDED_DATABASE_PREFIX + layout
    admin_url = _url_for(server_admin_url, name)
    if not await _is_seeded(admin_url):
        await _recreate_database(server_admin_url, name)
        await apply_migrations(admin_url)
        await _seed(admin_url, layout)
    await apply_migrations(admin_url, role_of(app_url))
    tenants = tenant_ids()
    return SeededDatabase(admin_url=admin_url, app_url=_url_for(app_url, name),
                          small_tenant=tenants[0], large_tenants=tenants[1:])
