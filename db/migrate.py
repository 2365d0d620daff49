"""Apply the ordered SQL migrations in db/migrations once per database, under an advisory lock.

Run it once per deployment (`python -m db.migrate`), before the web and worker processes start.
Concurrent runs are safe: the advisory lock makes later runs wait, then find nothing to apply.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg

from db.roles import grant_app_role

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same for every process that migrates this database.
MIGRATION_LOCK_ID = 7_402_118_331


class MigrationsNotPermitted(Exception):
    """Raised when the connected role may not read the migration log or apply pending migrations."""


def migration_files() -> list[Path]:
    return sorted(MIGRATIONS_DIR.glob("*.sql"))


async def apply_migrations(database_url: str, app_role: str | None = None) -> list[str]:
    """Apply pending migrations in file-name order; return the names applied by this call.

    `database_url` is the owner's. When `app_role` names another role, it is granted the
    application's rights on the tables afterwards. With nothing pending, no DDL runs, so the
    application role, which may read schema_migrations, can check that the schema is current.
    """
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
        role = await connection.fetchval("SELECT current_user")
        done = await applied_versions(connection, role)
        pending = [path for path in migration_files() if path.name not in done]
        if pending:
            await apply_pending(connection, role, pending)
        if app_role and app_role != role:
            await grant_app_role(connection, app_role)
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
        await connection.close()
    return [path.name for path in pending]


async def applied_versions(connection: asyncpg.Connection, role: str) -> set[str]:
    """Read the applied versions from schema_migrations, an empty set before the first migration."""
    if await connection.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return set()
    try:
        rows = await connection.fetch("SELECT version FROM schema_migrations")
    except asyncpg.InsufficientPrivilegeError:
        raise MigrationsNotPermitted(
            f"Role {role} may not read schema_migrations, so pending migrations cannot be checked. "
            f"Set DATABASE_ADMIN_URL to the URL of the role that owns the schema."
        ) from None
    return {row["version"] for row in rows}


async def apply_pending(connection: asyncpg.Connection, role: str, pending: list[Path]) -> None:
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for path in pending:
            logger.info("migration apply version=%s", path.name)
            async with connection.transaction():
                await connection.execute(path.read_text())
                await connection.execute("INSERT INTO schema_migrations (version) VALUES ($1)", path.name)
    except asyncpg.InsufficientPrivilegeError as error:
        raise MigrationsNotPermitted(
            f"{len(pending)} migrations are pending, but role {role} may not apply them ({error}). "
            f"Set DATABASE_ADMIN_URL to the URL of the role that owns the schema."
        ) from None


def main() -> None:
    from server.logs import configure_logging
    from db.roles import role_of
    from server.services import (ServiceUnreachable, admin_url_variable, resolve_admin_database_url,
                                 resolve_service_urls, stop_when_postgres_unreachable)
    from server.settings import get_settings

    settings = get_settings()
    configure_logging(settings)
    database_url, _ = resolve_service_urls(settings)
    admin_url = resolve_admin_database_url(settings, database_url)
    try:
        with stop_when_postgres_unreachable(admin_url_variable(settings), admin_url):
            applied = asyncio.run(apply_migrations(admin_url, role_of(database_url)))
    except (MigrationsNotPermitted, ServiceUnreachable) as error:
        raise SystemExit(str(error)) from None
    logger.info("migrations done applied=%d", len(applied))


if __name__ == "__main__":
    main()
