"""GET /usage: the caller's tenant's counts per day, from the periodically refreshed usage view."""

from __future__ import annotations

import base64
from datetime import date

from sanic import Blueprint, Request
from sanic.response import json

from db import usage as queries
from server.auth import principal
from server.errors import ValidationFailed
from server.pagination import parse_limit

blueprint = Blueprint("usage", url_prefix="/usage", strict_slashes=False)


def encode_day_cursor(day: date) -> str:
    return base64.urlsafe_b64encode(day.isoformat().encode()).decode().rstrip("=")


def decode_day_cursor(request: Request) -> date | None:
    raw = request.args.get("cursor")
    if not raw:
        return None
    try:
        return date.fromisoformat(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode())
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("cursor is invalid; pass the next_cursor of a previous page.",
                               details=[{"field": "cursor", "problem": "not a cursor from this API"}]) from None


@blueprint.get("/")
async def get_usage(request: Request):
    """Return the tenant's totals and its counts per UTC day, newest first, as of the view's last refresh."""
    caller = principal(request)
    limit = parse_limit(request)
    rows = await queries.list_daily_usage(request.app.ctx.db, tenant_id=caller.tenant_id, limit=limit + 1,
                                          before=decode_day_cursor(request))
    totals = await queries.usage_totals(request.app.ctx.db, tenant_id=caller.tenant_id)
    items = [{"day": row["day"].isoformat(), **{name: row[name] for name in queries.COUNT_COLUMNS}}
             for row in rows[:limit]]
    next_cursor = encode_day_cursor(rows[limit - 1]["day"]) if len(rows) > limit else None
    return json({"totals": totals, "items": items, "next_cursor": next_cursor})
