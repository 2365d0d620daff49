"""Service locations and secrets: the configured URLs, or the embedded servers under DATA_DIR."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from db import embedded, roles
from server.settings import PLACEHOLDER_JWT_SECRETS, Settings

logger = logging.getLogger(__name__)

# The generated password of the embedded PostgreSQL's application role, under DATA_DIR.
APP_ROLE_PASSWORD_FILE = "postgres_app.password"


def resolve_service_urls(settings: Settings) -> tuple[str, str]:
    """Return (database_url, redis_url), starting the embedded servers for any URL left unset.

    For the embedded PostgreSQL, database_url is the application role's, created on first use.
    """
    database_url = settings.database_url
    redis_url = settings.redis_url
    if database_url is None:
        admin_url = embedded.ensure_postgres(settings.data_dir)
        database_url = _run_async(roles.ensure_app_role(admin_url, Path(settings.data_dir) / APP_ROLE_PASSWORD_FILE))
    if redis_url is None:
        redis_url = embedded.ensure_redis(settings.data_dir)
    return database_url, redis_url


def resolve_admin_database_url(settings: Settings, database_url: str) -> str:
    """Return the URL that migrations use: DATABASE_ADMIN_URL, the embedded superuser, or DATABASE_URL."""
    if settings.database_admin_url:
        return settings.database_admin_url
    if settings.database_url is None:
        return embedded.ensure_postgres(settings.data_dir)
    logger.warning("database admin url unset, migrating as the application role role=%s", roles.role_of(database_url))
    return database_url


class ServiceUnreachable(Exception):
    """Raised at start when a configured server is unreachable or rejects the login; the message has no secrets."""


def admin_url_variable(settings: Settings) -> str:
    """Name the variable that the migrations' database URL came from, for error messages."""
    return "DATABASE_ADMIN_URL" if settings.database_admin_url else "DATABASE_URL"


def service_address(url: str, default_port: int) -> str:
    """Return host:port of a service URL; the credentials in it are left out."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or default_port}"


@contextmanager
def stop_when_postgres_unreachable(variable: str, url: str):
    """Turn a failed PostgreSQL connection into ServiceUnreachable naming `variable` and host:port."""
    address = service_address(url, 5432)
    try:
        yield
    except asyncpg.InvalidAuthorizationSpecificationError as error:
        raise ServiceUnreachable(f"PostgreSQL at {address} rejected the login of role {roles.role_of(url)} "
                                 f"({type(error).__name__}); check the credentials in {variable}.") from None
    except (OSError, asyncpg.CannotConnectNowError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise ServiceUnreachable(f"PostgreSQL at {address} is unreachable ({reason}); check that it is running "
                                 f"and that {variable} is right.") from None


def _run_async(coroutine):
    """Run a coroutine to its end from synchronous code, even when an event loop runs in this thread."""
    with ThreadPoolExecutor(max_workers=1) as runner:
        return runner.submit(asyncio.run, coroutine).result()


def export_service_urls(settings: Settings) -> tuple[str, str]:
    """Resolve the URLs and put them in the environment, so child processes use the same servers.

    With the embedded PostgreSQL, its owner's URL is exported as DATABASE_ADMIN_URL too. A child
    process finds DATABASE_URL set, so without it the child would migrate as the application
    role, which may not create tables.
    """
    database_url, redis_url = resolve_service_urls(settings)
    if settings.database_url is None and not settings.database_admin_url:
        os.environ["DATABASE_ADMIN_URL"] = embedded.ensure_postgres(settings.data_dir)
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
