"""POST /search."""

from __future__ import annotations

import time
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field
from sanic import Blueprint, Request
from sanic.response import json

from db import usage
from server.auth import principal
from server.cache import cache_status
from server.errors import ValidationFailed
from server.search import SearchRequest, elapsed_ms, search
from server.validation import NonBlankStr, parse_body

blueprint = Blueprint("search", url_prefix="/search", strict_slashes=False)

MAX_QUERY_CHARS = 2000


class SearchBody(BaseModel):
    query: NonBlankStr = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    limit: int = Field(10, ge=1, le=50)
    mode: Literal["hybrid", "vector", "keyword"] = "hybrid"
    document_ids: list[str] | None = Field(None, max_length=100)
    metadata: dict | None = None


def parse_ids(raw: list[str] | None) -> list[UUID] | None:
    """Parse document ids; one that is not a UUID is a client error, not a filter that matches nothing."""
    if raw is None:
        return None
    ids = []
    for index, value in enumerate(raw):
        try:
            ids.append(UUID(value))
        except ValueError:
            raise ValidationFailed("document_ids must hold document ids (UUIDs).",
                                   details=[{"field": f"document_ids[{index}]", "problem": "not a UUID"}]) from None
    return ids


def hit_body(rank: int, hit: dict) -> dict:
    return {"rank": rank, "score": round(float(hit["score"]), 6), "chunk_id": hit["chunk_id"],
            "document_id": hit["document_id"], "document_title": hit["document_title"], "content": hit["content"]}


@blueprint.post("/")
async def search_chunks(request: Request):
    started = time.perf_counter()
    caller = principal(request)
    body = parse_body(request, SearchBody)
    await usage.record_event(request.app.ctx.db, tenant_id=caller.tenant_id, kind="search")
    search_request = SearchRequest(
        tenant_id=caller.tenant_id, query=body.query.strip(), limit=body.limit, mode=body.mode,
        document_ids=parse_ids(body.document_ids), metadata=body.metadata,
    )
    cache = request.app.ctx.cache

    async def compute() -> dict:
        hits = await search(request.app.ctx.db, search_request, cache)
        return {"results": [hit_body(rank, hit) for rank, hit in enumerate(hits, start=1)]}

    value, from_cache = await cache.get_or_compute(cache.search_entry(caller.tenant_id, body.model_dump()), compute)
    request.ctx.cache_status = cache_status(from_cache)
    return json({"results": value["results"], "took_ms": elapsed_ms(started), "cached": bool(from_cache)})
