"""Keyset pagination: `?limit=` and an opaque `?cursor=` naming the last row of the previous page.

A cursor carries a short tag of the list that issued it: the endpoint, and the filters or parent
resource that select its rows. A cursor passed to another list is rejected as invalid, because it
would otherwise start that list at an unrelated row.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime
from uuid import UUID

from sanic import Request

from server.errors import ValidationFailed

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
SCOPE_TAG_CHARS = 8
INVALID_CURSOR_MESSAGE = "cursor is invalid; pass the next_cursor of a previous page of this list."


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


def scope_tag(*parts: object) -> str:
    """Return a list's tag, a short hash of its endpoint name and of the filters that select its rows."""
    text = "\x1f".join("" if part is None else str(part) for part in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:SCOPE_TAG_CHARS]


def encode_cursor(scope: str, created_at: datetime, row_id: UUID) -> str:
    raw = json.dumps([scope, created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(request: Request, scope: str) -> tuple[datetime, UUID] | None:
    """Read `?cursor=`, rejecting one that is malformed or was issued by a list other than `scope`."""
    raw = request.args.get("cursor")
    if not raw:
        return None
    try:
        padded = raw + "=" * (-len(raw) % 4)
        fields = json.loads(base64.urlsafe_b64decode(padded))
        # NOTE: cursors issued before lists were tagged have no scope and are still accepted, so a
        # client paging through a deploy is not cut off. Drop this once those cursors are gone.
        cursor_scope, created_at, row_id = [scope, *fields] if len(fields) == 2 else fields
        position = datetime.fromisoformat(created_at), UUID(row_id)
    except (ValueError, TypeError):
        raise invalid_cursor("not a cursor from this API") from None
    if cursor_scope != scope:
        raise invalid_cursor("issued by another list or with other filters")
    return position


def invalid_cursor(problem: str) -> ValidationFailed:
    return ValidationFailed(INVALID_CURSOR_MESSAGE, details=[{"field": "cursor", "problem": problem}])


def page(items: list[dict], limit: int, scope: str, key=lambda item: (item["created_at"], item["id"])) -> dict:
    """Build the page body from up to limit + 1 rows; the extra row only signals that more exist."""
    has_more = len(items) > limit
    items = items[:limit]
    next_cursor = encode_cursor(scope, *key(items[-1])) if has_more and items else None
    return {"items": items, "next_cursor": next_cursor}
