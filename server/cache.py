"""Search results cached in Redis, keyed by tenant and invalidated per tenant in O(1).

Each tenant has a generation counter that is part of every key. Changing the tenant's documents
bumps the counter after the change commits, so older entries are never read again and expire by
their TTL. Redis errors fail open: the caller computes the value as if nothing were cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
from uuid import UUID

from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.jsonenc import dumps
from server.metrics import record_cache_lookup

logger = logging.getLogger(__name__)


def generation_key(tenant_id: UUID) -> str:
    return f"cache:search:generation:{tenant_id}"


class SearchCache:
    def __init__(self, redis: Redis, ttl_seconds: int, enabled: bool):
        self.redis = redis
        self.ttl_seconds = ttl_seconds
        self.enabled = enabled

    async def _entry_key(self, tenant_id: UUID, request: dict) -> str:
        generation = await self.redis.get(generation_key(tenant_id)) or b"0"
        digest = hashlib.sha256(dumps(request).encode()).hexdigest()
        return f"cache:search:{tenant_id}:{generation.decode()}:{digest}"

    async def get(self, tenant_id: UUID, request: dict) -> tuple[dict | None, str | None]:
        """Return (cached value or None, key to store a fresh value under)."""
        if not self.enabled:
            return None, None
        try:
            key = await self._entry_key(tenant_id, request)
            raw = await self.redis.get(key)
        except RedisError as error:
            logger.warning("cache read failed kind=search error=%s", type(error).__name__)
            return None, None
        record_cache_lookup("search", raw is not None)
        return (json.loads(raw) if raw else None), key

    async def put(self, key: str | None, value: dict) -> None:
        if key is None:
            return
        try:
            await self.redis.set(key, dumps(value), ex=self.ttl_seconds)
        except RedisError as error:
            logger.warning("cache write failed kind=search error=%s", type(error).__name__)

    async def invalidate_tenant(self, tenant_id: UUID) -> None:
        try:
            await self.redis.incr(generation_key(tenant_id))
        except RedisError as error:
            logger.warning("cache invalidation failed kind=search tenant_id=%s error=%s",
                           tenant_id, type(error).__name__)
