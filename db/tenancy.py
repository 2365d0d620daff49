"""Tenant transactions: every query on a tenant table runs inside one.

A tenant transaction takes a pool connection (waiting at most the pool timeout), begins a
transaction and sets `app.tenant_id` for that transaction only, with set_config(..., true).
Row-level security then shows the tenant's rows and no other. The setting ends with the
transaction, even when it fails, so a pooled connection never carries one tenant's setting into
another request.

Query functions take part through the `tenant_read` and `tenant_write` decorators. Calls made
inside an open tenant transaction of the same task join it, so a group of queries can share one
transaction with `async with tenant_transaction(db, tenant_id):`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
from databases import Database

logger = logging.getLogger(__name__)

# Used when the Database was built without `pool_timeout` (see server.database.create_database).
DEFAULT_POOL_TIMEOUT_SECONDS = 5.0
# Seconds a 503's Retry-After header asks the client to wait before it retries.
RETRY_AFTER_SECONDS = 1

# Errors after which the connection is gone: a terminated backend, a server restart, a refused
# reconnection. Another connection may well work. A connection terminated while idle can be
# handed out before asyncpg notices its end, and its next query then fails with InternalClientError.
CONNECTION_LOST_ERRORS = (asyncpg.PostgresConnectionError, asyncpg.AdminShutdownError, asyncpg.CrashShutdownError,
                          asyncpg.CannotConnectNowError, asyncpg.InternalClientError, OSError)

T = TypeVar("T")

# The open tenant transaction of this context: (id of the Database, tenant id, task).
_active: ContextVar[tuple[int, UUID | None, asyncio.Task] | None] = ContextVar("tenant_transaction", default=None)


class DatabaseUnavailable(Exception):
    """No pool connection came free in time, or the connection was lost; the caller may retry later."""

    def __init__(self, message: str, retry_after: int = RETRY_AFTER_SECONDS):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class TenantMismatch(RuntimeError):
    """A query for one tenant ran inside another tenant's open transaction."""


def _joins_open_transaction(db: Database, tenant_id: UUID | None) -> bool:
    active = _active.get()
    if active is None or active[0] != id(db) or active[2] is not asyncio.current_task():
        return False
    if active[1] != tenant_id:
        raise TenantMismatch(f"query for tenant {tenant_id} inside the transaction of tenant {active[1]}")
    return True


async def _acquire(db: Database):
    """Take this task's pool connection, waiting at most the pool timeout."""
    connection = db.connection()
    timeout = getattr(db, "pool_timeout", DEFAULT_POOL_TIMEOUT_SECONDS)
    try:
        async with asyncio.timeout(timeout):
            await connection.__aenter__()
    except TimeoutError:
        logger.warning("database pool timed out timeout_seconds=%s", timeout)
        raise DatabaseUnavailable(f"No database connection came free within {timeout:g} s; "
                                  f"retry in a moment.") from None
    return connection


def _is_closed(raw: asyncpg.Connection) -> bool:
    try:
        return raw.is_closed()
    except asyncpg.InterfaceError:
        return True  # a lost connection has gone back to the pool already, and asking it anything raises


async def _rollback(transaction, raw: asyncpg.Connection) -> None:
    if _is_closed(raw):
        return
    try:
        await transaction.rollback()
    except (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError) as error:
        # The pool resets the connection on release, which rolls back what is left.
        logger.warning("database rollback failed error=%s", type(error).__name__)


@asynccontextmanager
async def tenant_transaction(db: Database, tenant_id: UUID | None):
    """Run the body in one transaction whose row-level security shows only `tenant_id`'s rows.

    `tenant_id` None opens a transaction with no tenant: tenant tables then show no rows, which
    suits only the SECURITY DEFINER functions such as the login lookup.
    """
    if _joins_open_transaction(db, tenant_id):
        yield db
        return
    connection = await _acquire(db)
    try:
        raw = connection.raw_connection
        transaction = raw.transaction()
        await transaction.start()
        token = _active.set((id(db), tenant_id, asyncio.current_task()))
        try:
            if tenant_id is not None:
                await raw.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant_id))
            yield db
        except BaseException:
            await _rollback(transaction, raw)
            raise
        finally:
            _active.reset(token)
        await transaction.commit()
    finally:
        await _release(db, connection)


async def _release(db: Database, connection) -> None:
    try:
        await connection.__aexit__(None, None, None)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError) as error:
        # The pool could not reset a lost connection and closed it, which frees its slot. The
        # task's `databases` connection still counts it as acquired, so it is dropped, and the
        # task's next query takes a fresh one.
        logger.warning("database connection release failed error=%s", type(error).__name__)
        db._connection = None


async def run_in_tenant(db: Database, tenant_id: UUID | None, work: Callable[[], Awaitable[T]], *,
                        idempotent: bool) -> T:
    """Run `work()` in a tenant transaction; retry once on a lost connection when it is idempotent.

    A lost connection that is not retried, or fails again, raises DatabaseUnavailable.
    """
    if _joins_open_transaction(db, tenant_id):
        return await work()
    attempts = 2 if idempotent else 1
    for attempt in range(1, attempts + 1):
        try:
            async with tenant_transaction(db, tenant_id):
                return await work()
        except CONNECTION_LOST_ERRORS as error:
            if attempt < attempts:
                logger.warning("database connection lost, retrying read error=%s", type(error).__name__)
                await _expire_pooled_connections(db)
                continue
            logger.error("database connection lost error=%s attempts=%d", type(error).__name__, attempt)
            raise DatabaseUnavailable("The database connection was lost; retry in a moment.") from error
    raise AssertionError("unreachable")


async def _expire_pooled_connections(db: Database) -> None:
    """Make the pool replace its open connections on their next acquire, so a retry gets a fresh one.

    A lost connection usually means that PostgreSQL restarted or terminated the application's
    backends, which leaves the pool's idle connections dead too. Without this, the retry could
    take one of them and fail again.
    NOTE: this reads the private `_backend._pool` of `databases` 0.9.0. Under a version that
    renames it, the retry runs without expiring, as before.
    """
    pool = getattr(getattr(db, "_backend", None), "_pool", None)
    expire = getattr(pool, "expire_connections", None)
    if expire is not None:
        await expire()


def _tenant_query(idempotent: bool):
    def decorate(query: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        @functools.wraps(query)
        async def run(db: Database, *args: Any, tenant_id: UUID | None, **kwargs: Any) -> T:
            return await run_in_tenant(db, tenant_id, lambda: query(db, *args, tenant_id=tenant_id, **kwargs),
                                       idempotent=idempotent)

        return run

    return decorate


# For queries that only read: a lost connection is retried once on a fresh one.
tenant_read = _tenant_query(idempotent=True)
# For queries that write: never retried, since the first attempt may have committed.
tenant_write = _tenant_query(idempotent=False)


@asynccontextmanager
async def tenant_connection(connection: asyncpg.Connection, tenant_id: UUID):
    """Open a transaction for `tenant_id` on a plain asyncpg connection, as the RQ jobs use."""
    async with connection.transaction():
        await connection.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant_id))
        yield connection
