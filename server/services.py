"""Service locations and secrets: the configured URLs, or the embedded servers under DATA_DIR."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from db import embedded
from server.settings import PLACEHOLDER_JWT_SECRETS, Settings


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


def export_development_jwt_secret(settings: Settings) -> bool:
    """Replace a placeholder JWT_SECRET in development with a random one kept in DATA_DIR.

    The placeholder is public, so anyone reaching the server could sign tokens with it. The
    generated secret is written once (readable by the owner only) and reused, so tokens survive
    a restart. Returns True when the environment was changed.
    """
    if settings.environment != "development" or settings.jwt_secret not in PLACEHOLDER_JWT_SECRETS:
        return False
    path = Path(settings.data_dir) / "jwt.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    os.environ["JWT_SECRET"] = path.read_text().strip()
    return True
