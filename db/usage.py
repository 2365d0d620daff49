"""Usage counts: search and chat events, and the per-day view that GET /usage reads.

The materialized view usage_daily is refreshed CONCURRENTLY, so reads never wait for a refresh.
The application refreshes it through app_refresh_usage(), which runs as the view's owner.
"""

from __future__ import annotations

from datetime import date
from typing import Literal
from uuid import UUID

import asyncpg
from databases import Database

from db.rows import as_dict, as_dicts
from db.tenancy import tenant_read, tenant_write

UsageKind = Literal["search", "chat"]
COUNT_COLUMNS = ("documents", "chunks", "searches", "chats")


@tenant_write
async def record_event(db: Database, *, tenant_id: UUID, kind: UsageKind) -> None:
    await db.execute("INSERT INTO usage_events (tenant_id, kind) VALUES (:tenant_id, :kind)",
                     {"tenant_id": tenant_id, "kind": kind})


@tenant_read
async def list_daily_usage(db: Database, *, tenant_id: UUID, limit: int, before: date | None) -> list[dict]:
    """Return the tenant's counts per day as of the last refresh, newest day first, strictly before `before`."""
    values: dict = {"tenant_id": tenant_id, "limit": limit}
    keyset = ""
    if before is not None:
        keyset = " AND day < :before"
        values["before"] = before
    records = await db.fetch_all(
        "SELECT day, documents, chunks, searches, chats FROM tenant_usage_daily"
        f" WHERE tenant_id = :tenant_id{keyset} ORDER BY day DESC LIMIT :limit",
        values,
    )
    return as_dicts(records)


@tenant_read
async def usage_totals(db: Database, *, tenant_id: UUID) -> dict:
    record = await db.fetch_one(
        "SELECT coalesce(sum(documents), 0)::bigint AS documents, coalesce(sum(chunks), 0)::bigint AS chunks,"
        " coalesce(sum(searches), 0)::bigint AS searches, coalesce(sum(chats), 0)::bigint AS chats"
        " FROM tenant_usage_daily WHERE tenant_id = :tenant_id",
        {"tenant_id": tenant_id},
    )
    return as_dict(record)


async def refresh_usage_view(connection: asyncpg.Connection) -> None:
    """Recompute usage_daily from the tables; readers keep seeing the old rows until it commits."""
    await connection.execute("SELECT app_refresh_usage()")
