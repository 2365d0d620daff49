"""The per-worker PostgreSQL pool, built on `databases` with asyncpg."""

from __future__ import annotations

import json
import logging

import asyncpg
from databases import Database
from pgvector.asyncpg import register_vector

from db.roles import describe_app_role
from server.settings import Settings

logger = logging.getLogger(__name__)


async def init_connection(connection: asyncpg.Connection) -> None:
    """Teach each new pool connection the vector type and decode json/jsonb into Python objects."""
    await register_vector(connection)
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def create_database(settings: Settings, database_url: str) -> Database:
    """Build (without connecting) the pool of one worker: DB_POOL_SIZE kept, DB_MAX_OVERFLOW more on demand.

    Tenant transactions (db.tenancy) wait at most DB_POOL_TIMEOUT for a connection.
    """
    database = Database(
        database_url,
        min_size=min(2, settings.db_pool_size),
        max_size=settings.db_pool_max,
        max_inactive_connection_lifetime=settings.db_pool_recycle,
        command_timeout=60,
        init=init_connection,
    )
    database.pool_timeout = settings.db_pool_timeout
    return database


async def check_connection_budget(database_url: str, settings: Settings, processes: int) -> None:
    """Refuse to start when the pools of all worker processes together could exhaust the server.

    The ingestion workers and migrations need connections too, so DB_RESERVED_CONNECTIONS stay free.
    """
    connection = await asyncpg.connect(database_url)
    try:
        limit = int(await connection.fetchval("SHOW max_connections"))
        superuser_reserved = int(await connection.fetchval("SHOW superuser_reserved_connections"))
        # PostgreSQL 16 added reserved_connections, kept for roles with pg_use_reserved_connections.
        role_reserved = int(await connection.fetchval(
            "SELECT coalesce((SELECT setting FROM pg_settings WHERE name = 'reserved_connections'), '0')"
        ))
    finally:
        await connection.close()
    needed = processes * settings.db_pool_max + settings.db_reserved_connections
    server_reserved = superuser_reserved + role_reserved
    available = limit - server_reserved
    if needed > available:
        raise SystemExit(
            f"Invalid configuration: {processes} workers x (DB_POOL_SIZE {settings.db_pool_size} + "
            f"DB_MAX_OVERFLOW {settings.db_max_overflow}) + {settings.db_reserved_connections} reserved = "
            f"{needed} connections, but PostgreSQL allows {available} (max_connections {limit} - "
            f"{server_reserved} reserved by the server). Lower BACKEND_WORKERS or the pool sizes."
        )


async def check_app_role(database_url: str) -> None:
    """Log a warning when DATABASE_URL's role escapes row-level security, which then isolates nothing."""
    connection = await asyncpg.connect(database_url)
    try:
        problems = await describe_app_role(connection)
    finally:
        await connection.close()
    if problems:
        logger.warning("row-level security not enforced for the application reason=%r; set DATABASE_URL to a "
                       "role without BYPASSRLS that owns no table, and DATABASE_ADMIN_URL to the owner",
                       "; ".join(problems))
