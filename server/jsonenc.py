"""JSON encoding of responses: UUIDs as strings, timestamps as RFC 3339 in UTC."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from uuid import UUID


def _default(value):
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value, **kwargs) -> str:
    return json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":"))
