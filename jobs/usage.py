"""The maintenance job that refreshes the usage view behind GET /usage."""

from __future__ import annotations

import asyncio
import logging
import os
import time

import asyncpg

from db.usage import refresh_usage_view as refresh_view

logger = logging.getLogger(__name__)


def refresh_usage_view() -> dict:
    """RQ entry point: refresh the usage_daily materialized view; returns the seconds it took."""
    return asyncio.run(_refresh())


async def _refresh() -> dict:
    started = time.perf_counter()
    connection = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        await refresh_view(connection)
    finally:
        await connection.close()
    seconds = time.perf_counter() - started
    logger.info("usage view refreshed seconds=%.3f", seconds)
    return {"seconds": round(seconds, 3)}
