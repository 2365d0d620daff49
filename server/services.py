"""Where PostgreSQL and Redis are: the configured URLs, or the embedded servers under DATA_DIR."""

from __future__ import annotations

import os

from db import embedded
from server.settings import Settings


def resolve_service_urls(settings: Settings) -> tuple[str, str]:
    """Return (database_url, redis_url), starting the embedded servers for any URL left unset."""
    database_url = settings.database_url
    redis_url = settings.redis_url
    if database_url is None or redis_url is None:
        if database_url is None:
            database_url = embedded.ensure_postgres(settings.data_dir)
        if redis_url is None:
            redis_url = embedded.ensure_redis(settings.data_dir)
    return database_url, redis_url


def export_service_urls(settings: Settings) -> tuple[str, str]:
    """Resolve the URLs and put them in the environment, so child processes use the same servers."""
    database_url, redis_url = resolve_service_urls(settings)
    os.environ["DATABASE_URL"] = database_url
    os.environ["REDIS_URL"] = redis_url
    return database_url, redis_url
