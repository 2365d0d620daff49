"""The Sanic app factory, its per-worker resources and its middleware."""

from __future__ import annotations

import logging
import os
import re
import time
import uuid

import redis as sync_redis
import redis.asyncio as aioredis
from sanic import Request, Sanic
from sanic.response import HTTPResponse
from sanic_ext import Extend

from server import auth, metrics, overload, ratelimit
from server.cache import Cache
from server.database import create_database
from server.errors import Unauthorized, install_error_handlers
from server.jsonenc import dumps
from server.logs import configure_logging, request_id_var
from server.routes import auth as auth_routes
from server.routes import chat, docs, documents, health, jobs, search, usage, users
from server.search import start_model_loading
from server.services import export_service_urls
from server.settings import Settings, get_settings

logger = logging.getLogger(__name__)

APP_NAME = "ragplatform"
# An incoming X-Request-ID is echoed only when it looks like an id, so nothing else reaches the logs.
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
# Multipart framing and form fields around the file; the file itself is checked against MAX_UPLOAD_BYTES.
UPLOAD_OVERHEAD_BYTES = 1024 * 1024


def create_app(settings: Settings | None = None) -> Sanic:
    settings = settings or get_settings()
    configure_logging(settings)
    metrics.configure(settings)
    app = Sanic(APP_NAME, dumps=dumps, configure_logging=False)
    app.config.REQUEST_MAX_SIZE = settings.max_upload_bytes + UPLOAD_OVERHEAD_BYTES
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = settings.graceful_shutdown_timeout
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.ACCESS_LOG = False
    # server/openapi.py describes the API and server/routes/docs.py serves it, so sanic-ext's
    # generated description and its CDN-loaded /docs page are off.
    app.config.OAS = False
    app.ctx.settings = settings
    Extend(app)

    for blueprint in (docs.blueprint, health.blueprint, auth_routes.blueprint, users.blueprint, documents.blueprint,
                      jobs.blueprint, search.blueprint, chat.blueprint, usage.blueprint):
        app.blueprint(blueprint)
    install_error_handlers(app)
    overload.install(app, settings)
    app.register_middleware(begin_request, "request")
    app.register_middleware(finish_request, "response")
    app.register_listener(open_resources, "before_server_start")
    app.register_listener(stop_background_tasks, "before_server_stop")
    app.register_listener(close_resources, "after_server_stop")
    chat.register_listeners(app)
    return app


async def open_resources(app: Sanic) -> None:
    """Open this worker's pools: one PostgreSQL pool and one Redis pool, shared by its requests."""
    settings = app.ctx.settings
    database_url = os.environ.get("DATABASE_URL") or settings.database_url
    redis_url = os.environ.get("REDIS_URL") or settings.redis_url
    if not database_url or not redis_url:
        database_url, redis_url = export_service_urls(settings)
    app.ctx.db = metrics.TimedDatabase(create_database(settings, database_url))
    await app.ctx.db.connect()
    app.ctx.redis = aioredis.Redis.from_url(redis_url, max_connections=settings.redis_max_connections)
    # RQ is synchronous; its calls run in threads with their own small pool.
    app.ctx.sync_redis = sync_redis.Redis.from_url(redis_url, max_connections=settings.redis_max_connections)
    app.ctx.cache = Cache.connect(redis_url, settings)
    app.ctx.rate_limiter = ratelimit.RateLimiter.connect(redis_url, settings) if settings.rate_limit_enabled else None
    if app.ctx.rate_limiter is not None:
        # Every authenticated request needs its tenant's limits.
        warmed = await app.ctx.rate_limiter.tenant_limits.warm(app.ctx.db)
        logger.info("tenant rate limits warmed tenants=%d", warmed)
    # Loading takes seconds; doing it in the background lets the worker acknowledge its start to
    # Sanic's manager in time. Query encodes queue behind it on the same thread.
    start_model_loading()
    app.add_task(metrics.sample_gauges(app, settings.metrics_sample_seconds), name="metrics-sampler")
    logger.info("worker ready pool_max=%d", settings.db_pool_max)


async def stop_background_tasks(app: Sanic) -> None:
    # Cancelled here, Sanic does not warn at shutdown that the task was cancelled unfinished.
    await app.cancel_task("metrics-sampler", raise_exception=False)


async def close_resources(app: Sanic) -> None:
    await app.ctx.db.disconnect()
    await app.ctx.redis.aclose()
    app.ctx.sync_redis.close()
    await app.ctx.cache.close()
    if app.ctx.rate_limiter is not None:
        await app.ctx.rate_limiter.close()


async def begin_request(request: Request) -> None:
    incoming = request.headers.get("x-request-id", "")
    request.ctx.request_id = incoming if REQUEST_ID_PATTERN.match(incoming) else uuid.uuid4().hex
    request_id_var.set(request.ctx.request_id)
    request.ctx.started = time.perf_counter()
    metrics.start_batch()
    request.ctx.cache_status = None
    try:
        auth.authenticate(request)
    except Unauthorized:
        # A request with a missing or bad token still spends its client IP's tokens.
        await ratelimit.limit_request(request)
        raise
    await ratelimit.limit_request(request)


async def finish_request(request: Request, response: HTTPResponse) -> None:
    request_id = getattr(request.ctx, "request_id", None) or uuid.uuid4().hex
    response.headers["X-Request-ID"] = request_id
    if response.content_type == "application/json":
        response.content_type = "application/json; charset=utf-8"
    if getattr(request.ctx, "cache_status", None):
        response.headers["X-Cache"] = request.ctx.cache_status
    ratelimit.add_rate_limit_headers(request, response)
    started = getattr(request.ctx, "started", None)
    seconds = time.perf_counter() - started if started else 0.0
    caller = getattr(request.ctx, "principal", None)
    route = request.route.path if request.route else "unmatched"
    logger.info("request done method=%s route=/%s status=%s duration_ms=%.1f user_id=%s",
                request.method, route.lstrip("/"), response.status, seconds * 1000, caller.user_id if caller else "-")
    metrics.note_response(request, response)
    metrics.record_request(request, response.status, seconds)
    metrics.flush_batch()
