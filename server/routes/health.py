"""GET /health (the process is serving) and GET /health/ready (its dependencies respond)."""

from __future__ import annotations

import asyncio
import logging

from sanic import Blueprint, Request
from sanic.response import json

from jobs import embedding
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


async def _check_queue(request: Request) -> dict:
    redis = request.app.ctx.redis
    depths = {name: await redis.llen(f"rq:queue:{name}") for name in WORKER_QUEUES}
    workers = await redis.scard("rq:workers")
    return {"status": "ok" if workers else "degraded", "workers": workers, "depth": depths}


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
    healthy = all(checks[name]["status"] == "ok" for name in ("database", "redis", "model"))
    return json({"status": "ok" if healthy else "unavailable", "checks": checks}, status=200 if healthy else 503)
