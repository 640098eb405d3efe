"""Server-Sent Events encoding. Each event has a name, an id (so a client can tell where it
stopped) and one JSON ``data`` line."""

from __future__ import annotations

import json
from typing import Any

SSE_MEDIA_TYPE = "text/event-stream"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_event(event: str, data: Any, event_id: int | str | None = None) -> bytes:
    """One named event, ready to write."""
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), default=str))
    return ("\n".join(lines) + "\n\n").encode()


def sse_data(data: Any) -> bytes:
    """An unnamed ``data:`` event, as OpenAI's streams use."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()
