"""Turn `databases` records into plain dicts."""

from __future__ import annotations

from typing import Any


def as_dict(record: Any) -> dict | None:
    return None if record is None else dict(record._mapping)


def as_dicts(records: list[Any]) -> list[dict]:
    return [dict(record._mapping) for record in records]
