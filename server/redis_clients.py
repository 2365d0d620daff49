"""Redis clients that give up quickly, for the layers that must keep serving while Redis is down."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def connect_fail_fast(redis_url: str, *, max_connections: int, timeout_seconds: float) -> aioredis.Redis:
    """Return a client on its own pool whose waits, connects and reads time out after `timeout_seconds`.

    Failed commands are not retried, so a request that meets an outage learns of it at once.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        redis_url, max_connections=max_connections, timeout=timeout_seconds,
        socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds, retry=Retry(NoBackoff(), 0),
    )
    return aioredis.Redis(connection_pool=pool)
