"""Keyset pagination: `?limit=` and an opaque `?cursor=` naming the last row of the previous page."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from uuid import UUID

from sanic import Request

from server.errors import ValidationFailed

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def parse_limit(request: Request, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    raw = request.args.get("limit")
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= maximum:
        raise ValidationFailed(f"limit must be an integer from 1 to {maximum}.",
                               details=[{"field": "limit", "problem": f"must be 1..{maximum}, got {raw!r}"}])
    return limit


def encode_cursor(created_at: datetime, row_id: UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(request: Request) -> tuple[datetime, UUID] | None:
    raw = request.args.get("cursor")
    if not raw:
        return None
    try:
        padded = raw + "=" * (-len(raw) % 4)
        created_at, row_id = json.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(created_at), UUID(row_id)
    except (ValueError, TypeError):
        raise ValidationFailed("cursor is invalid; pass the next_cursor of a previous page.",
                               details=[{"field": "cursor", "problem": "not a cursor from this API"}]) from None


def page(items: list[dict], limit: int, key=lambda item: (item["created_at"], item["id"])) -> dict:
    """Build the page body from up to limit + 1 rows; the extra row only signals that more exist."""
    has_more = len(items) > limit
    items = items[:limit]
    next_cursor = encode_cursor(*key(items[-1])) if has_more and items else None
    return {"items": items, "next_cursor": next_cursor}
