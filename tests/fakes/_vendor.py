"""What the fake vendor servers share: request recording, fault triggers, the echo answer.

A fake answers ``"Echo: " + <last user message>``, split into word-sized pieces for streaming.
Tokens are counted as whitespace-separated words, which is honest enough for usage checks.

Fault triggers, written anywhere in the last user message:

=================== ==========================================================================
``[[status:NNN]]``  answer HTTP NNN with the vendor's error body (``Retry-After: 1`` on 429)
``[[stall]]``       wait 30 s before answering (or until the client hangs up)
``[[cut]]``         stream: two pieces of text, then the body ends without the vendor's end
                    marker; non-streaming: a truncated JSON body
``[[garbage]]``     200 with a body that is not JSON (streaming: an event whose data is not JSON)
``[[slow]]``        0.3 s between stream events
``[[stream_error]]`` stream: two pieces of text, then the vendor's in-stream error
=================== ==========================================================================
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.requests import Request

__all__ = [
    "Faults",
    "RecordedRequest",
    "RequestLog",
    "answer",
    "count_tokens",
    "echo",
    "last_user",
    "pieces",
    "record",
    "stall",
]

STALL_SECONDS = 30.0
SLOW_SECONDS = 0.3

_STATUS = re.compile(r"\[\[status:(\d{3})\]\]")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request a fake received: method, path, lower-cased headers and decoded JSON body."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any


class RequestLog(list[RecordedRequest]):
    """The requests a fake received, oldest first: a plain list, appended by the server thread.

    ``list.append`` is atomic, so the tests' thread may read it while the server runs;
    :meth:`snapshot` gives a copy that later requests cannot change.
    """

    def snapshot(self) -> list[RecordedRequest]:
        """A copy of the requests received so far."""
        return list(self)


async def record(log: RequestLog, request: Request) -> Any:
    """Append ``request`` to ``log`` and return its decoded JSON body (``None`` if not JSON)."""
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    log.append(
        RecordedRequest(
            method=request.method,
            path=request.url.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            json=body,
        )
    )
    return body


@dataclass(frozen=True, slots=True)
class Faults:
    """The fault triggers found in a message."""

    status: int | None = None
    stall: bool = False
    cut: bool = False
    garbage: bool = False
    slow: bool = False
    stream_error: bool = False

    @classmethod
    def parse(cls, text: str) -> Faults:
        match = _STATUS.search(text)
        return cls(
            status=int(match.group(1)) if match else None,
            stall="[[stall]]" in text,
            cut="[[cut]]" in text,
            garbage="[[garbage]]" in text,
            slow="[[slow]]" in text,
            stream_error="[[stream_error]]" in text,
        )


def last_user(messages: list[tuple[str, str]]) -> str:
    """The text of the last ``(role, text)`` pair whose role is ``user``; empty if none."""
    return next((text for role, text in reversed(messages) if role == "user"), "")


def echo(last_user: str) -> str:
    """The fakes' deterministic answer."""
    return f"Echo: {last_user}"


def pieces(text: str) -> list[str]:
    """Word-sized pieces that join back to ``text``: ``["Echo:", " hello", " world"]``."""
    return re.findall(r"\s*\S+(?:\s+$)?", text)


def count_tokens(text: str) -> int:
    """Tokens, counted as whitespace-separated words."""
    return len(text.split())


def answer(
    last_user: str, *, max_tokens: int | None, stop: list[str] | None
) -> tuple[str, str | None, str]:
    """``(text, matched stop sequence, reason)`` where reason is ``stop``, ``length`` or ``seq``."""
    text = echo(last_user)
    for sequence in stop or []:
        index = text.find(sequence)
        if sequence and index >= 0:
            return text[:index], sequence, "seq"
    parts = pieces(text)
    if max_tokens is not None and len(parts) > max_tokens:
        return "".join(parts[:max_tokens]), None, "length"
    return text, None, "stop"


async def stall(request: Request, seconds: float = STALL_SECONDS) -> None:
    """Wait ``seconds``, or less if the client hangs up first (so shutdown stays quick)."""
    with anyio.move_on_after(seconds):
        while not await request.is_disconnected():
            await anyio.sleep(0.05)
