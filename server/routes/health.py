"""GET /health (the process is serving) and GET /health/ready (its dependencies respond)."""

from __future__ import annotations

import asyncio
import logging

from datetime import datetime, timezone

from redis.exceptions import ResponseError
from rq import Queue, Worker
from rq.worker import WorkerStatus
from sanic import Blueprint, Request
from sanic.response import json

from jobs import embedding, fairness
from jobs.queues import WORKER_QUEUES

logger = logging.getLogger(__name__)

blueprint = Blueprint("health", url_prefix="/health", strict_slashes=False)

CHECK_TIMEOUT_SECONDS = 2.0


@blueprint.get("/")
async def health(request: Request):
    return json({"status": "ok"})


async def _check_database(request: Request) -> dict:
    await request.app.ctx.db.fetch_val("SELECT 1")
    return {"status": "ok"}


async def _check_redis(request: Request) -> dict:
    await request.app.ctx.redis.ping()
    return {"status": "ok"}


async def _check_model(request: Request) -> dict:
    return {"status": "ok" if embedding.is_loaded() else "loading"}


def _registered_workers(redis) -> tuple[list[Worker], int]:
    """Read each registered worker; return those read and the count of registrations unreadable.

    A registration whose hash has a malformed field, or whose key is not a hash, makes RQ's
    Worker.all raise for every worker. Skipping it keeps the live workers and queue depths visible.
    """
    workers, unreadable = [], 0
    for key in Worker.all_keys(connection=redis):
        try:
            worker = Worker.find_by_key(key, connection=redis)
        except (ValueError, ResponseError) as error:
            # Debug only: probes repeat every few seconds, and the body reports the count.
            logger.debug("worker registration unreadable key=%s error=%s", key, type(error).__name__)
            unreadable += 1
            continue
        if worker is not None:
            workers.append(worker)
    return workers, unreadable


def _read_queue(redis) -> dict:
    """Read live workers and queue depths with RQ's own client. It blocks, so run it in a thread.

    A worker counts as live while its registration key exists. RQ renews the key on every
    heartbeat, and it expires 60 to 120 s after the last one (jobs/worker.py sets the intervals).
    """
    workers, unreadable = _registered_workers(redis)
    now = datetime.now(timezone.utc)
    heartbeats = [worker.last_heartbeat for worker in workers if worker.last_heartbeat is not None]
    pending = sum(fairness.pending_counts(redis).values())
    return {
        "status": "ok" if workers else "degraded",
        "workers": len(workers),
        "unreadable_workers": unreadable,
        "busy_workers": sum(1 for worker in workers if worker.get_state() == WorkerStatus.BUSY),
        "oldest_heartbeat_seconds": round(max((now - beat).total_seconds() for beat in heartbeats), 1)
        if heartbeats else None,
        "depth": {name: Queue(name, connection=redis).count for name in WORKER_QUEUES},
        "ingestion_pending": pending,
    }


async def _check_queue(request: Request) -> dict:
    return await asyncio.to_thread(_read_queue, request.app.ctx.sync_redis)


async def _run(check, request: Request) -> dict:
    try:
        return await asyncio.wait_for(check(request), CHECK_TIMEOUT_SECONDS)
    except Exception as error:  # noqa: BLE001 - a readiness probe reports every failure as "down"
        logger.warning("readiness check failed check=%s error=%s", check.__name__, type(error).__name__)
        return {"status": "down", "error": type(error).__name__}


@blueprint.get("/ready")
async def ready(request: Request):
    checks = {
        "database": await _run(_check_database, request),
        "redis": await _run(_check_redis, request),
        "queue": await _run(_check_queue, request),
        "model": await _run(_check_model, request),
    }
    # The web process can serve reads and accept uploads without a worker: uploads wait queued,
    # and the sweep repairs them once a worker is back. So a queue without a live worker reports
    # "degraded" and keeps the status 200; only a down dependency of the web process gives 503.
    healthy = all(checks[name]["status"] == "ok" for name in ("database", "redis", "model"))
    return json({"status": "ok" if healthy else "unavailable", "checks": checks}, status=200 if healthy else 503)
