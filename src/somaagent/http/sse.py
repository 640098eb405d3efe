"""A small Server-Sent Events reader for streaming answers (aiohttp or httpx responses)."""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import httpx


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One Server-Sent Event: its ``event`` name (``message`` when unnamed) and ``data``."""

    event: str
    data: str


# The event-stream format ends a line with CRLF, LF or a lone CR, and with nothing else.
_LINE_END = re.compile(r"\r\n|\r|\n")


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """Split a UTF-8 byte stream into lines at CRLF, LF or CR, whatever the chunk boundaries."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    async for chunk in chunks:
        pending += decoder.decode(chunk)
        if not pending:
            continue
        # A CR at the end of a chunk may be the first half of a CRLF: keep it for the next one.
        held = "\r" if pending[-1] == "\r" else ""
        lines = _LINE_END.split(pending[:-1] if held else pending)
        pending = lines.pop() + held
        for line in lines:
            yield line
    pending += decoder.decode(b"", final=True)
    if pending:
        lines = _LINE_END.split(pending)
        if not lines[-1]:
            lines.pop()  # the body ended with a line break: no line after it
        for line in lines:
            yield line


def _body_chunks(response: aiohttp.ClientResponse | httpx.Response) -> AsyncIterator[bytes]:
    if isinstance(response, httpx.Response):
        return response.aiter_bytes()
    return response.content.iter_any()


async def aiter_sse(response: aiohttp.ClientResponse | httpx.Response) -> AsyncIterator[SSEEvent]:
    """Parse a ``text/event-stream`` body into events, following the WHATWG rules we need.

    Lines end at CRLF, LF or a lone CR (and nowhere else); comment lines (``:``) and unknown
    fields are skipped; multi-line ``data`` is joined with newlines; an event is dispatched at a
    blank line. A final event that is not followed by a blank line is still dispatched (some
    servers omit it), so callers decide completeness from the events themselves, never from a
    clean end of the body.

    Args:
        response: an aiohttp or httpx response whose body has not been read yet.
    """
    event = ""
    data: list[str] = []
    async for line in _lines(_body_chunks(response)):
        if not line:
            if data:
                yield SSEEvent(event or "message", "\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield SSEEvent(event or "message", "\n".join(data))
