"""The event log of a chat answer, kept in Redis so that any worker or instance can replay it.

Each answer's events go to a Redis stream whose entry ids are ``0-<event id>``, so a client's
``Last-Event-ID: n`` maps to an XREAD after ``0-n``: the events after n arrive once each, in
order. The stream and the owner key expire CHAT_EVENTS_TTL_SECONDS after the last event, and the
stream keeps at most CHAT_EVENTS_MAX_LENGTH entries.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from server.jsonenc import dumps

logger = logging.getLogger(__name__)

KEY_PREFIX = "chat:"
TERMINAL_EVENTS = ("done", "error")
# Entries read per XREAD; a replay of a long answer takes several reads.
READ_BATCH = 500


@dataclass(frozen=True)
class Event:
    id: int
    name: str
    data: dict


def events_key(message_id: str) -> str:
    return f"{KEY_PREFIX}events:{message_id}"


def owner_key(message_id: str) -> str:
    return f"{KEY_PREFIX}owner:{message_id}"


def owner_value(tenant_id, user_id) -> str:
    return f"{tenant_id}:{user_id}"


class EventLog:
    """Append and read the events of chat answers in Redis streams."""

    def __init__(self, redis: aioredis.Redis, ttl_seconds: int, max_length: int):
        self.redis = redis
        self.ttl_seconds = ttl_seconds
        self.max_length = max_length

    async def claim(self, message_id: str, owner: str) -> None:
        """Record who may read the events of `message_id`."""
        await self.redis.set(owner_key(message_id), owner, ex=self.ttl_seconds)

    async def owner(self, message_id: str) -> str | None:
        value = await self.redis.get(owner_key(message_id))
        return None if value is None else value.decode()

    async def append(self, message_id: str, events: list[Event]) -> None:
        """Add events in order and push both keys' expiry to CHAT_EVENTS_TTL_SECONDS from now, in one round trip."""
        pipeline = self.redis.pipeline(transaction=False)
        for event in events:
            pipeline.xadd(events_key(message_id), {"event": event.name, "data": dumps(event.data)},
                          id=f"0-{event.id}", maxlen=self.max_length, approximate=False)
        pipeline.expire(events_key(message_id), self.ttl_seconds)
        pipeline.expire(owner_key(message_id), self.ttl_seconds)
        await pipeline.execute()

    async def read_after(self, message_id: str, last_id: int, block_ms: int) -> list[Event]:
        """Return the events after `last_id`, waiting up to `block_ms` for one when there are none yet."""
        reply = await self.redis.xread({events_key(message_id): f"0-{last_id}"}, count=READ_BATCH,
                                       block=block_ms)
        events = []
        for _key, entries in reply or []:
            for entry_id, fields in entries:
                event_id = int(entry_id.decode().split("-", 1)[1])
                events.append(Event(event_id, fields[b"event"].decode(), json.loads(fields[b"data"])))
        return events

    async def final_event_id(self, message_id: str) -> int | None:
        """Return the id of the answer's `done` or `error` event, or None while the answer goes on."""
        reply = await self.redis.xrevrange(events_key(message_id), count=1)
        if not reply:
            return None
        entry_id, fields = reply[0]
        if fields[b"event"].decode() not in TERMINAL_EVENTS:
            return None
        return int(entry_id.decode().split("-", 1)[1])

    async def exists(self, message_id: str) -> bool:
        return bool(await self.redis.exists(events_key(message_id)))


def open_event_log(redis_url: str, *, max_connections: int, ttl_seconds: int, max_length: int) -> EventLog:
    """Build an event log on its own blocking pool, so that followers waiting in XREAD queue for a
    connection instead of failing once REDIS_MAX_CONNECTIONS are busy."""
    pool = aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=max_connections, timeout=5)
    return EventLog(aioredis.Redis(connection_pool=pool), ttl_seconds, max_length)


async def close_event_log(log: EventLog) -> None:
    try:
        await log.redis.aclose()
        await log.redis.connection_pool.disconnect()
    except RedisError as error:
        logger.warning("chat event log not closed cleanly error=%s", type(error).__name__)
