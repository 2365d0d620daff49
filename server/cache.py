"""Values cached in Redis: search results, user profiles, roles and query embeddings.

Each entry is stored with the generation of its scope (a tenant for search results, a user for
profiles and roles). Changing the scope's data bumps its counter after the change commits, so an
entry stored under an older generation reads as a miss, and invalidation is one INCR. A read that
raced a write stores its stale value under the generation it read before computing, which no
later read accepts. The counter and the entry are read together in one MGET.

A cold key is computed once across workers and instances (single flight). Within a worker,
concurrent requests for one key share one lookup. Across workers, the first lookup takes a short
lock with SET NX PX, and the others wait for its value. Each computation increments
`cache:stats:<kind>:computed`, which tests and operators read.

Redis errors fail open: the value is computed as if nothing were cached, and Redis is skipped for
REDIS_RETRY_SECONDS after a failure so an outage costs each request no wait.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from server.jsonenc import dumps
from server.metrics import record_cache_lookup
from server.redis_clients import connect_fail_fast
from server.settings import Settings

logger = logging.getLogger(__name__)

# Query embeddings depend only on the model and the text, so they stay valid until the model changes.
EMBEDDING_TTL_SECONDS = 7 * 24 * 3600
# A Redis that takes longer than this counts as unreachable for the request at hand.
REDIS_TIMEOUT_SECONDS = 0.5
REDIS_RETRY_SECONDS = 1.0
FAILURE_LOG_INTERVAL_SECONDS = 60.0
# The first request on a cold key keeps the lock this long at most. The others wait as long for
# its value, then compute the value themselves.
SINGLE_FLIGHT_LOCK_SECONDS = 5.0
SINGLE_FLIGHT_FIRST_POLL_SECONDS = 0.005
SINGLE_FLIGHT_MAX_POLL_SECONDS = 0.05
# Separates the generation from the value in a stored entry.
GENERATION_SEPARATOR = b"|"


def generation_key(tenant_id: UUID) -> str:
    """Return the key of the counter that each change to the tenant's documents bumps."""
    return f"cache:search:generation:{tenant_id}"


def user_generation_key(user_id: UUID) -> str:
    """Return the key of the counter that each change to the user bumps, for its profile and role."""
    return f"cache:user:generation:{user_id}"


def computed_counter_key(kind: str) -> str:
    return f"cache:stats:{kind}:computed"


def digest(value: Any) -> str:
    return hashlib.sha256(dumps(value).encode()).hexdigest()


@dataclass(frozen=True)
class Codec:
    """The conversion of one kind of value to bytes for Redis and back."""

    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


JSON_CODEC = Codec(encode=lambda value: dumps(value).encode(), decode=json.loads)


@dataclass(frozen=True)
class Entry:
    """The location of a cached value: its kind (for logs and counters), key, TTL and generation counter."""

    kind: str
    key: str
    ttl_seconds: int
    generation_key: str | None = None
    codec: Codec = JSON_CODEC


class Cache:
    """One worker's cache client, with its own Redis pool whose short timeouts keep an outage from stalling requests."""

    def __init__(self, redis: aioredis.Redis, settings: Settings):
        self.redis = redis
        self.settings = settings
        self.enabled = settings.cache_enabled
        self._redis_retry_at = 0.0
        self._redis_down = False
        self._last_failure_log = -math.inf
        self.failures = 0
        # The lookup in progress for each key in this worker, which concurrent requests await.
        self._lookups: dict[str, asyncio.Future] = {}

    @classmethod
    def connect(cls, redis_url: str, settings: Settings) -> "Cache":
        redis = connect_fail_fast(redis_url, max_connections=settings.redis_max_connections,
                                  timeout_seconds=REDIS_TIMEOUT_SECONDS)
        return cls(redis, settings)

    async def close(self) -> None:
        await self.redis.aclose()
        await self.redis.connection_pool.disconnect()

    # The entries of each kind of value.

    def search_entry(self, tenant_id: UUID, request: dict) -> Entry:
        return Entry("search", f"cache:search:{tenant_id}:{digest(request)}", self.settings.cache_search_results_ttl,
                     generation_key(tenant_id))

    def profile_entry(self, tenant_id: UUID, user_id: UUID) -> Entry:
        return Entry("profile", f"cache:user:{tenant_id}:{user_id}:profile", self.settings.cache_user_profile_ttl,
                     user_generation_key(user_id))

    def role_entry(self, tenant_id: UUID, user_id: UUID) -> Entry:
        return Entry("role", f"cache:user:{tenant_id}:{user_id}:role", self.settings.cache_permissions_ttl,
                     user_generation_key(user_id))

    def embedding_entry(self, tenant_id: UUID, model: str, text: str, codec: Codec) -> Entry:
        # The vector depends on nothing but the text, but a key shared across tenants would let one
        # tenant tell by the response time whether another has searched the same text.
        text_hash = hashlib.sha256(text.encode()).hexdigest()
        return Entry("embedding", f"cache:embedding:{tenant_id}:{model}:{text_hash}", EMBEDDING_TTL_SECONDS,
                     codec=codec)

    # Reads and writes.

    async def get_or_compute(self, entry: Entry, compute: Callable[[], Awaitable[Any]]) -> tuple[Any, bool | None]:
        """Return (value, True when it came from the cache), or (value, None) when caching is off.

        The generation is read before computing and stored with the value, so a value computed
        while a write bumped the generation is never served.
        """
        if not self.enabled:
            return await compute(), None
        value, from_cache = await self._joined_lookup(entry, compute)
        record_cache_lookup(entry.kind, from_cache)
        return value, from_cache

    async def _joined_lookup(self, entry: Entry, compute: Callable[[], Awaitable[Any]]) -> tuple[Any, bool]:
        """Join the lookup of the key that this worker already has in progress, or lead a new one."""
        lookup = self._lookups.get(entry.key)
        if lookup is not None:
            try:
                value, _ = await asyncio.shield(lookup)
                return value, True
            except asyncio.CancelledError:
                if not lookup.cancelled():
                    raise
                # The request that looked the key up went away before the value came: look it up here.
        return await self._lead_lookup(entry, compute)

    async def _lead_lookup(self, entry: Entry, compute: Callable[[], Awaitable[Any]]) -> tuple[Any, bool]:
        """Look the key up on behalf of every request of this worker that requests it meanwhile."""
        lookup = asyncio.get_running_loop().create_future()
        self._lookups[entry.key] = lookup
        try:
            result = await self._get_or_compute_shared(entry, compute)
        except asyncio.CancelledError:
            lookup.cancel()
            raise
        except BaseException as error:
            lookup.set_exception(error)
            # Marks the exception as retrieved, since no other request may be waiting for it.
            lookup.exception()
            raise
        else:
            lookup.set_result(result)
            return result
        finally:
            if self._lookups.get(entry.key) is lookup:
                del self._lookups[entry.key]

    async def _get_or_compute_shared(self, entry: Entry,
                                     compute: Callable[[], Awaitable[Any]]) -> tuple[Any, bool]:
        """Read the entry from Redis, or compute it under the cross-worker lock and store it."""
        if not self._redis_usable():
            return await compute(), False
        try:
            generation, value = await self._read(entry)
            if value is not None:
                return value, True
            locked = await self.redis.set(lock_key(entry), b"1", nx=True, px=int(SINGLE_FLIGHT_LOCK_SECONDS * 1000))
            if not locked:
                value = await self._wait_for_value(entry)
                if value is not None:
                    return value, True
        except RedisError as error:
            self._note_redis_failure(error, entry.kind)
            return await compute(), False
        self._note_redis_success()

        try:
            value = await compute()
        except BaseException:
            if locked:
                await self._release_lock(entry)
            raise
        await self._store(entry, generation, value, locked)
        return value, False

    async def _read(self, entry: Entry) -> tuple[bytes, Any]:
        """Return the current generation and the value stored under it, or None for the value."""
        if entry.generation_key is None:
            raw = await self.redis.get(entry.key)
            return b"", (None if raw is None else entry.codec.decode(raw))
        generation, raw = await self.redis.mget(entry.generation_key, entry.key)
        generation = generation or b"0"
        if raw is None:
            return generation, None
        stored_generation, _, payload = raw.partition(GENERATION_SEPARATOR)
        if stored_generation != generation:
            return generation, None
        return generation, entry.codec.decode(payload)

    async def _wait_for_value(self, entry: Entry) -> Any:
        """Poll for the value that the lock holder computes, up to the lock's lifetime."""
        deadline = time.monotonic() + SINGLE_FLIGHT_LOCK_SECONDS
        delay = SINGLE_FLIGHT_FIRST_POLL_SECONDS
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            _, value = await self._read(entry)
            if value is not None:
                return value
            if not await self.redis.exists(lock_key(entry)):
                # The holder stored its value between the two reads, or failed: compute it here
                # only in the second case.
                _, value = await self._read(entry)
                return value
            delay = min(delay * 2, SINGLE_FLIGHT_MAX_POLL_SECONDS)
        return None

    async def _store(self, entry: Entry, generation: bytes, value: Any, locked: bool) -> None:
        payload = entry.codec.encode(value)
        if entry.generation_key is not None:
            payload = generation + GENERATION_SEPARATOR + payload
        try:
            async with self.redis.pipeline(transaction=False) as pipeline:
                pipeline.set(entry.key, payload, ex=entry.ttl_seconds)
                pipeline.incr(computed_counter_key(entry.kind))
                if locked:
                    # NOTE: a computation slower than the lock may delete a later holder's lock,
                    # which costs at most one more computation.
                    pipeline.delete(lock_key(entry))
                await pipeline.execute()
        except RedisError as error:
            self._note_redis_failure(error, entry.kind)

    async def _release_lock(self, entry: Entry) -> None:
        try:
            await self.redis.delete(lock_key(entry))
        except RedisError as error:
            self._note_redis_failure(error, entry.kind)

    # Invalidation.

    async def invalidate_tenant(self, tenant_id: UUID) -> None:
        """Make every cached search result of the tenant a miss; call it after the change commits."""
        await self._bump(generation_key(tenant_id), "search")

    async def invalidate_user(self, user_id: UUID) -> None:
        """Make the user's cached profile and role a miss; call it after the change commits."""
        await self._bump(user_generation_key(user_id), "profile")

    async def _bump(self, key: str, kind: str) -> None:
        try:
            await self.redis.incr(key)
        except RedisError as error:
            # NOTE: the entries then stay readable until their TTL ends.
            logger.warning("cache invalidation failed kind=%s key=%s error=%s", kind, key, type(error).__name__)

    # Redis health, shared by every kind of value.

    def _redis_usable(self) -> bool:
        return time.monotonic() >= self._redis_retry_at

    def _note_redis_failure(self, error: Exception, kind: str) -> None:
        self.failures += 1
        now = time.monotonic()
        self._redis_retry_at = now + REDIS_RETRY_SECONDS
        self._redis_down = True
        if now - self._last_failure_log >= FAILURE_LOG_INTERVAL_SECONDS:
            self._last_failure_log = now
            logger.warning("cache cannot reach redis, computing values kind=%s error=%s failures=%d",
                           kind, type(error).__name__, self.failures)

    def _note_redis_success(self) -> None:
        if self._redis_down:
            self._redis_down = False
            logger.info("cache reached redis again failures=%d", self.failures)


def lock_key(entry: Entry) -> str:
    return f"{entry.key}:lock"


def cache_status(from_cache: bool | None) -> str | None:
    """Return the X-Cache value: hit, miss, or None when caching is off."""
    if from_cache is None:
        return None
    return "hit" if from_cache else "miss"
