"""Ingestion progress events, published in Redis for the document events stream.

The job publishes each event on a per-document channel and also stores the latest one under a
key, so a client that connects between two events still learns where ingestion stands.
"""

from __future__ import annotations

import json

from redis import Redis

# The latest event outlives any ingestion, so a late client still finds it.
LATEST_EVENT_TTL_SECONDS = 3600
TERMINAL_EVENTS = ("ready", "failed")


def channel_name(document_id: str) -> str:
    return f"document:{document_id}:events"


def latest_key(document_id: str) -> str:
    return f"document:{document_id}:latest"


def publish_event(redis: Redis, document_id: str, event: str, data: dict) -> None:
    message = json.dumps({"event": event, "data": data})
    with redis.pipeline() as pipeline:
        pipeline.set(latest_key(document_id), message, ex=LATEST_EVENT_TTL_SECONDS)
        pipeline.publish(channel_name(document_id), message)
        pipeline.execute()


def progress_data(status: str, chunks_done: int, chunks_total: int) -> dict:
    if status == "ready":
        progress = 1.0
    elif chunks_total:
        progress = chunks_done / chunks_total
    else:
        progress = 0.0
    return {"status": status, "progress": round(progress, 4), "chunks_done": chunks_done,
            "chunks_total": chunks_total}
