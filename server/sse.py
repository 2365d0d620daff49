"""Server-Sent Events: framing and the response headers that stop proxies from buffering."""

from __future__ import annotations

import json

from server.jsonenc import dumps

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
PING = ": ping\n\n"


def format_event(event: str, data: dict, event_id: int | None = None) -> str:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append(f"data: {dumps(data)}")
    return "\n".join(lines) + "\n\n"


def parse_message(raw: bytes | str) -> tuple[str, dict]:
    message = json.loads(raw)
    return message["event"], message["data"]
