"""Token-bucket rate limits kept in Redis, and the cap on open chat streams per user.

Every request except health and docs is checked against its buckets: the user's and the
tenant's when authenticated, the client IP's otherwise, plus a bucket per client IP and email on
POST /auth/login. One Lua script checks and updates all of them in one EVALSHA round trip, and
refills them by the Redis server's clock, so workers and instances with skewed clocks agree.

While Redis cannot be reached, each worker decides with its own bounded in-process buckets, so
limits still hold per worker but are no longer shared. Redis is tried again after
REDIS_RETRY_SECONDS, and shared limiting resumes once it responds.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
import uuid
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import dataclass
from uuid import UUID

import asyncpg
import redis.asyncio as aioredis
from databases import Database
from redis.exceptions import RedisError
from sanic import Request
from sanic.exceptions import BadRequest
from sanic.response import HTTPResponse

from db import users as user_queries
from server.errors import RateLimited
from server.metrics import record_rate_limit
from server.redis_clients import connect_fail_fast
from server.settings import Settings

logger = logging.getLogger(__name__)

KEY_PREFIX = "ratelimit:"
EXEMPT_PATHS = ("/health", "/health/ready", "/docs", "/openapi.json")
LOGIN_PATH = "/auth/login"
# Enough for a person who mistypes a password, but far too few to guess one.
LOGIN_ATTEMPTS_PER_MINUTE = 10
MINUTE = 60
HOUR = 3600

# A change to tenants.settings takes effect in every worker within this many seconds.
TENANT_SETTINGS_TTL_SECONDS = 10.0
TENANT_SETTINGS_MAX_ENTRIES = 10_000
FALLBACK_MAX_KEYS = 10_000
# A Redis that takes longer than this counts as unreachable for the request at hand.
REDIS_TIMEOUT_SECONDS = 0.5
# After a failure, requests skip Redis for this long instead of each waiting for it to fail.
REDIS_RETRY_SECONDS = 1.0
FAILURE_LOG_INTERVAL_SECONDS = 60.0
# A stream slot left behind by a crashed worker frees itself after this long.
# NOTE: a stream open for longer than this stops counting against the cap.
STREAM_LEASE_SECONDS = 600
# Retry-After of the 429 for a full stream cap. Streams end at unknown times, so this is a polling
# interval: each retry costs one token of the request buckets.
STREAM_RETRY_AFTER_SECONDS = 1

# KEYS: one hash per bucket. ARGV: the capacity and the window in seconds (time to refill from
# empty to full) of each bucket, in KEYS order. A token is taken from every bucket only when each
# has one, so a rejected request costs nothing. Returns the allowed flag (1 or 0), then per
# bucket: tokens remaining, seconds until full, seconds until the next whole token (0 when one
# is there).
TOKEN_BUCKET_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local levels = {}
local allowed = 1
for i = 1, #KEYS do
  local capacity = tonumber(ARGV[2 * i - 1])
  local window = tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'updated')
  local level = tonumber(state[1])
  local updated = tonumber(state[2])
  if level == nil or updated == nil then
    level = capacity
  else
    level = math.min(capacity, level + math.max(0, now - updated) * capacity / window)
  end
  levels[i] = level
  if level < 1 then
    allowed = 0
  end
end
local reply = {allowed}
for i = 1, #KEYS do
  local capacity = tonumber(ARGV[2 * i - 1])
  local window = tonumber(ARGV[2 * i])
  local rate = capacity / window
  local level = levels[i]
  if allowed == 1 then
    level = level - 1
    redis.call('HSET', KEYS[i], 'tokens', string.format('%.17g', level), 'updated', string.format('%.17g', now))
    redis.call('EXPIRE', KEYS[i], math.ceil(window))
  end
  local retry = 0
  if level < 1 then
    retry = math.ceil((1 - level) / rate)
  end
  table.insert(reply, math.floor(level))
  table.insert(reply, math.ceil((capacity - level) / rate))
  table.insert(reply, retry)
end
return reply
"""

# KEYS[1]: a sorted set of a user's open streams, scored by lease expiry. ARGV: stream id, the
# maximum of open streams, lease seconds. Returns 1 and the open count with the new stream, or
# 0 and the open count when the cap is reached. Expired leases are dropped first.
STREAM_ACQUIRE_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local open = redis.call('ZCARD', KEYS[1])
if open >= tonumber(ARGV[2]) then
  return {0, open}
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return {1, open + 1}
"""


@dataclass(frozen=True)
class Bucket:
    """One token bucket: its policy name in the headers, Redis key, size and refill window."""

    name: str
    key: str
    capacity: int
    window: int


@dataclass(frozen=True)
class BucketState:
    """A bucket after a request: whole tokens left, seconds until full and until the next token."""

    bucket: Bucket
    remaining: int
    reset: int
    retry_after: int


@dataclass(frozen=True)
class Decision:
    """The verdict on one request over all of its buckets."""

    allowed: bool
    states: list[BucketState]

    def tightest(self) -> BucketState:
        """Pick the bucket the headers describe: the one that blocks longest, else the emptiest."""
        if not self.allowed:
            return max(self.states, key=lambda state: state.retry_after)
        return min(self.states, key=lambda state: (state.remaining, state.bucket.capacity))

    def retry_after(self) -> int:
        return max(state.retry_after for state in self.states)


def is_exempt(path: str) -> bool:
    return path in EXEMPT_PATHS or path.startswith("/docs/")


def client_ip(request: Request) -> str:
    """Return the peer address, or the forwarded one when Sanic is configured to trust a proxy."""
    return request.remote_addr or request.ip


def login_email(request: Request) -> str | None:
    """Return the lower-cased email of a login body, or None when the body has none."""
    try:
        body = request.json
    except BadRequest:
        return None
    email = body.get("email") if isinstance(body, dict) else None
    if not isinstance(email, str) or not email.strip():
        return None
    return email.strip().lower()


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    """Describe the tightest bucket in the IETF httpapi draft fields and the X-RateLimit-* ones."""
    state = decision.tightest()
    bucket = state.bucket
    return {
        "RateLimit-Policy": f'"{bucket.name}";q={bucket.capacity};w={bucket.window}',
        "RateLimit": f'"{bucket.name}";r={state.remaining};t={state.reset}',
        "X-RateLimit-Limit": str(bucket.capacity),
        "X-RateLimit-Remaining": str(state.remaining),
        "X-RateLimit-Reset": str(state.reset),
    }


class LocalBuckets:
    """Per-worker token buckets for while Redis is unreachable.

    At most `max_keys` buckets are kept; the least recently used one goes first, which at worst
    hands a client a full bucket again.
    """

    def __init__(self, max_keys: int):
        self.max_keys = max_keys
        self._levels: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, buckets: list[Bucket]) -> Decision:
        now = time.monotonic()
        levels = [self._refilled(bucket, now) for bucket in buckets]
        allowed = all(level >= 1 for level in levels)
        states = []
        for bucket, level in zip(buckets, levels):
            if allowed:
                level -= 1
                self._store(bucket.key, level, now)
            rate = bucket.capacity / bucket.window
            retry_after = math.ceil((1 - level) / rate) if level < 1 else 0
            states.append(BucketState(bucket, math.floor(level), math.ceil((bucket.capacity - level) / rate),
                                      retry_after))
        return Decision(allowed, states)

    def _refilled(self, bucket: Bucket, now: float) -> float:
        stored = self._levels.get(bucket.key)
        if stored is None:
            return float(bucket.capacity)
        level, updated = stored
        return min(bucket.capacity, level + max(0.0, now - updated) * bucket.capacity / bucket.window)

    def _store(self, key: str, level: float, now: float) -> None:
        self._levels[key] = (level, now)
        self._levels.move_to_end(key)
        while len(self._levels) > self.max_keys:
            self._levels.popitem(last=False)


class TenantLimits:
    """Per-tenant overrides of the per-minute and per-hour limits, cached in-process for a few seconds.

    `tenants.settings` may contain `rate_limit_per_minute` and `rate_limit_per_hour` (positive
    integers). A missing or invalid value falls back to the server's setting.
    """

    def __init__(self, per_minute: int, per_hour: int, ttl: float = TENANT_SETTINGS_TTL_SECONDS,
                 max_entries: int = TENANT_SETTINGS_MAX_ENTRIES):
        self.per_minute = per_minute
        self.per_hour = per_hour
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[UUID, tuple[float, tuple[int, int]]] = OrderedDict()

    async def get(self, db: Database, tenant_id: UUID) -> tuple[int, int]:
        """Return (per minute, per hour) for the tenant."""
        now = time.monotonic()
        cached = self._entries.get(tenant_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        limits = await self._load(db, tenant_id)
        self._remember(tenant_id, limits, now)
        return limits

    async def warm(self, db: Database) -> int:
        """Load the limits of up to `max_entries` tenants in one query, so first requests skip it; return the count."""
        try:
            rows = await user_queries.list_tenant_settings(db, limit=self.max_entries)
        except (asyncpg.PostgresError, OSError, asyncio.TimeoutError) as error:
            logger.warning("tenant rate limits not warmed error=%s", type(error).__name__)
            return 0
        now = time.monotonic()
        # Oldest first, so that the most recently created tenants are the last ones evicted.
        for row in reversed(rows):
            self._remember(row["id"], self._limits_from(row["settings"] or {}, row["id"]), now)
        return len(rows)

    def _remember(self, tenant_id: UUID, limits: tuple[int, int], now: float) -> None:
        self._entries[tenant_id] = (now + self.ttl, limits)
        self._entries.move_to_end(tenant_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def _load(self, db: Database, tenant_id: UUID) -> tuple[int, int]:
        try:
            settings = await user_queries.get_tenant_settings(db, tenant_id=tenant_id) or {}
        except (asyncpg.PostgresError, OSError, asyncio.TimeoutError) as error:
            # The defaults are cached like a read value, so a database outage costs one query per TTL.
            logger.warning("tenant rate limits not loaded, using defaults tenant_id=%s error=%s",
                           tenant_id, type(error).__name__)
            return self.per_minute, self.per_hour
        return self._limits_from(settings, tenant_id)

    def _limits_from(self, settings: dict, tenant_id: UUID) -> tuple[int, int]:
        return (self._positive(settings, "rate_limit_per_minute", self.per_minute, tenant_id),
                self._positive(settings, "rate_limit_per_hour", self.per_hour, tenant_id))

    @staticmethod
    def _positive(settings: dict, name: str, default: int, tenant_id: UUID) -> int:
        value = settings.get(name) if isinstance(settings, dict) else None
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            logger.warning("tenant setting ignored, not a positive integer tenant_id=%s name=%s value=%r",
                           tenant_id, name, value)
            return default
        return value


class RateLimiter:
    """One worker's limiter: the Redis scripts, the tenant overrides and the in-process fallback."""

    def __init__(self, redis: aioredis.Redis, settings: Settings):
        self.redis = redis
        self.settings = settings
        self.tenant_limits = TenantLimits(settings.rate_limit_per_minute, settings.rate_limit_per_hour)
        self.local_buckets = LocalBuckets(FALLBACK_MAX_KEYS)
        # Registered once; redis-py sends EVALSHA and loads the script again after a Redis restart.
        self._take_script = redis.register_script(TOKEN_BUCKET_SCRIPT)
        self._acquire_stream_script = redis.register_script(STREAM_ACQUIRE_SCRIPT)
        self._local_streams: dict[UUID, int] = {}
        self._redis_retry_at = 0.0
        self._redis_down = False
        self._last_failure_log = -math.inf
        self.failures = 0
        self.fallback_decisions = 0

    @classmethod
    def connect(cls, redis_url: str, settings: Settings) -> "RateLimiter":
        """Build a limiter with its own Redis pool, whose short timeouts keep an outage from stalling requests."""
        redis = connect_fail_fast(redis_url, max_connections=settings.redis_max_connections,
                                  timeout_seconds=REDIS_TIMEOUT_SECONDS)
        return cls(redis, settings)

    async def close(self) -> None:
        await self.redis.aclose()
        await self.redis.connection_pool.disconnect()

    async def buckets_for(self, request: Request) -> list[Bucket]:
        caller = getattr(request.ctx, "principal", None)
        buckets = []
        if caller is None:
            ip = client_ip(request)
            buckets.append(Bucket("ip", f"{KEY_PREFIX}ip:{ip}", 2 * self.settings.rate_limit_per_minute, MINUTE))
        else:
            per_minute, per_hour = await self.tenant_limits.get(request.app.ctx.db, caller.tenant_id)
            buckets.append(Bucket("user", f"{KEY_PREFIX}user:{caller.user_id}", per_minute, MINUTE))
            buckets.append(Bucket("tenant", f"{KEY_PREFIX}tenant:{caller.tenant_id}", per_hour, HOUR))
        if request.path == LOGIN_PATH and request.method == "POST":
            email = login_email(request)
            if email is not None:
                # The email is hashed so that Redis keys carry no addresses.
                digest = hashlib.sha256(email.encode()).hexdigest()[:32]
                buckets.append(Bucket("login", f"{KEY_PREFIX}login:{client_ip(request)}:{digest}",
                                      LOGIN_ATTEMPTS_PER_MINUTE, MINUTE))
        return buckets

    async def take(self, buckets: list[Bucket]) -> Decision:
        """Take a token from each bucket, in Redis when it is reachable, else in this worker's memory."""
        if time.monotonic() >= self._redis_retry_at:
            try:
                reply = await self._take_script(keys=[bucket.key for bucket in buckets],
                                                args=[value for bucket in buckets
                                                      for value in (bucket.capacity, bucket.window)])
            except (RedisError, OSError) as error:
                self._note_redis_failure(error)
            else:
                self._note_redis_success()
                return self._decision_from_reply(buckets, reply)
        self.fallback_decisions += 1
        return self.local_buckets.take(buckets)

    @staticmethod
    def _decision_from_reply(buckets: list[Bucket], reply: list) -> Decision:
        states = [BucketState(bucket, int(reply[1 + 3 * index]), int(reply[2 + 3 * index]),
                              int(reply[3 + 3 * index]))
                  for index, bucket in enumerate(buckets)]
        return Decision(bool(int(reply[0])), states)

    async def acquire_stream(self, user_id: UUID) -> str:
        """Reserve one of the user's stream slots and return its id, or raise 429 when all are taken."""
        stream_id = uuid.uuid4().hex
        maximum = self.settings.max_concurrent_streams
        if time.monotonic() >= self._redis_retry_at:
            try:
                allowed, open_streams = await self._acquire_stream_script(
                    keys=[stream_key(user_id)], args=[stream_id, maximum, STREAM_LEASE_SECONDS])
            except (RedisError, OSError) as error:
                self._note_redis_failure(error)
            else:
                self._note_redis_success()
                if not int(allowed):
                    raise_too_many_streams(int(open_streams), maximum)
                return stream_id
        open_streams = self._local_streams.get(user_id, 0)
        if open_streams >= maximum:
            raise_too_many_streams(open_streams, maximum)
        self._local_streams[user_id] = open_streams + 1
        return "local:" + stream_id

    async def release_stream(self, user_id: UUID, stream_id: str) -> None:
        if stream_id.startswith("local:"):
            remaining = self._local_streams.get(user_id, 1) - 1
            if remaining > 0:
                self._local_streams[user_id] = remaining
            else:
                self._local_streams.pop(user_id, None)
            return
        try:
            await self.redis.zrem(stream_key(user_id), stream_id)
        except (RedisError, OSError) as error:
            # The lease frees the slot when it expires.
            self._note_redis_failure(error)

    def _note_redis_failure(self, error: Exception) -> None:
        self.failures += 1
        self._redis_retry_at = time.monotonic() + REDIS_RETRY_SECONDS
        self._redis_down = True
        now = time.monotonic()
        if now - self._last_failure_log >= FAILURE_LOG_INTERVAL_SECONDS:
            self._last_failure_log = now
            logger.warning("rate limiter cannot reach redis, using in-process buckets error=%s failures=%d "
                           "fallback_decisions=%d", type(error).__name__, self.failures, self.fallback_decisions)

    def _note_redis_success(self) -> None:
        if self._redis_down:
            self._redis_down = False
            logger.info("rate limiter reached redis again failures=%d fallback_decisions=%d", self.failures,
                        self.fallback_decisions)


def stream_key(user_id: UUID) -> str:
    return f"{KEY_PREFIX}streams:{user_id}"


def stream_cap_headers(maximum: int) -> dict[str, str]:
    """Describe the full stream cap in the rate limit headers of its 429.

    The cap counts open streams, so its policy has no window (`w`), and the `t` of RateLimit is
    left out because the server cannot know when a stream will end. X-RateLimit-Reset repeats
    Retry-After, which is a polling interval rather than a promise that a slot is free by then.
    """
    return {
        "RateLimit-Policy": f'"streams";q={maximum}',
        "RateLimit": '"streams";r=0',
        "X-RateLimit-Limit": str(maximum),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(STREAM_RETRY_AFTER_SECONDS),
        "Retry-After": str(STREAM_RETRY_AFTER_SECONDS),
    }


def raise_too_many_streams(open_streams: int, maximum: int) -> None:
    raise RateLimited(f"{open_streams} chat streams are open for this user, the maximum of {maximum}. "
                      f"Retry when one ends.", headers=stream_cap_headers(maximum))


async def limit_request(request: Request) -> None:
    """Take the request's tokens, keep the decision for the response headers, and raise 429 when denied."""
    request.ctx.rate_limit = None
    limiter: RateLimiter | None = request.app.ctx.rate_limiter
    if limiter is None or is_exempt(request.path):
        return
    buckets = await limiter.buckets_for(request)
    decision = await limiter.take(buckets)
    record_rate_limit(decision)
    request.ctx.rate_limit = decision
    if not decision.allowed:
        retry_after = decision.retry_after()
        bucket = decision.tightest().bucket
        # The message leaves the wait to Retry-After, so it reads the same for every rejected attempt.
        if bucket.name == "login":
            message = "Too many login attempts for this email. Retry after the seconds in Retry-After."
        else:
            message = (f"Rate limit of {bucket.capacity} requests per {bucket.window} s ({bucket.name}) exceeded. "
                       f"Retry after the seconds in Retry-After.")
        raise RateLimited(message, headers={"Retry-After": str(retry_after)})


def add_rate_limit_headers(request: Request, response: HTTPResponse) -> None:
    decision = getattr(request.ctx, "rate_limit", None)
    if decision is None:
        return
    for name, value in rate_limit_headers(decision).items():
        response.headers[name] = value


@asynccontextmanager
async def stream_slot(request: Request, user_id: UUID):
    """Hold one of the user's MAX_CONCURRENT_STREAMS slots for the duration of a chat stream.

    With RATE_LIMIT_ENABLED=false there is no limiter, so streams are not capped either.
    """
    limiter: RateLimiter | None = request.app.ctx.rate_limiter
    if limiter is None:
        yield
        return
    try:
        stream_id = await limiter.acquire_stream(user_id)
    except RateLimited:
        # The 429 carries the stream cap's headers; the request buckets let this request through.
        request.ctx.rate_limit = None
        raise
    try:
        yield
    finally:
        await limiter.release_stream(user_id, stream_id)
