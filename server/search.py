"""Hybrid search: pgvector cosine and PostgreSQL full text, fused by reciprocal rank fusion."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

import numpy as np
from databases import Database

from db import chunks as queries
from jobs import embedding
from server.cache import Cache, Codec

# The constant of reciprocal rank fusion: score = sum of 1 / (RRF_K + rank) over the rankings.
RRF_K = 60
# Each ranking fetches this many times `limit` candidates before fusion.
CANDIDATE_FACTOR = 4

SearchMode = Literal["hybrid", "vector", "keyword"]

# One thread per worker process runs the model, so that query encodes stay off the event loop
# and a worker's encodes run one at a time instead of competing for the cores.
_encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="query-encoder")


@dataclass(frozen=True)
class SearchRequest:
    tenant_id: UUID
    query: str
    limit: int = 10
    mode: SearchMode = "hybrid"
    document_ids: list[UUID] | None = None
    metadata: dict | None = None


def _load_and_warm_up() -> None:
    embedding.load_model(threads=1)
    embedding.encode(["warm up"])


def start_model_loading() -> None:
    """Load the model on the encoder thread; encodes submitted meanwhile wait behind it."""
    _encoder.submit(_load_and_warm_up)


EMBEDDING_CODEC = Codec(encode=lambda vector: np.asarray(vector, dtype=np.float32).tobytes(),
                        decode=lambda raw: np.frombuffer(raw, dtype=np.float32))


async def embed_query(text: str, tenant_id: UUID, cache: Cache | None = None) -> np.ndarray:
    """Encode the query, or read its vector from the cache when one is given."""
    async def encode() -> np.ndarray:
        loop = asyncio.get_running_loop()
        vectors = await loop.run_in_executor(_encoder, embedding.encode, [text])
        return vectors[0]

    if cache is None:
        return await encode()
    vector, _ = await cache.get_or_compute(cache.embedding_entry(tenant_id, embedding.MODEL_NAME, text, EMBEDDING_CODEC), encode)
    return vector


def fuse(rankings: list[list[dict]], limit: int) -> list[dict]:
    """Merge rankings by reciprocal rank fusion; each hit keeps the best similarity any ranking gave it."""
    scores: dict = {}
    hits: dict = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            key = hit["chunk_id"]
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
            merged = hits.setdefault(key, dict(hit))
            if hit.get("similarity") is not None:
                merged["similarity"] = hit["similarity"]
    ordered = sorted(scores, key=lambda key: (-scores[key], str(key)))[:limit]
    return [{**hits[key], "score": scores[key]} for key in ordered]


async def search(db: Database, request: SearchRequest, cache: Cache | None = None) -> list[dict]:
    """Return up to `limit` hits, best first, each with `score` (non-increasing) and `similarity`.

    With a cache, the query's embedding is read from it or stored in it.
    """
    scope = {"tenant_id": request.tenant_id, "document_ids": request.document_ids, "metadata": request.metadata}
    if request.mode == "keyword":
        hits = await queries.keyword_search(db, query=request.query, limit=request.limit, **scope)
        return [{**hit, "score": float(hit.pop("rank")), "similarity": None} for hit in hits]

    vector = await embed_query(request.query, request.tenant_id, cache)
    if request.mode == "vector":
        hits = await queries.vector_search(db, embedding=vector, limit=request.limit, **scope)
        return [{**hit, "score": float(hit["similarity"])} for hit in hits]

    candidates = request.limit * CANDIDATE_FACTOR
    by_vector = await queries.vector_search(db, embedding=vector, limit=candidates, **scope)
    by_keyword = await queries.keyword_search(db, query=request.query, limit=candidates, **scope)
    for hit in by_keyword:
        hit.pop("rank")
        hit["similarity"] = None
    return fuse([by_vector, by_keyword], request.limit)


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
