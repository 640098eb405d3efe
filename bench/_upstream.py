"""A minimal, fast OpenAI-compatible upstream for the gateway-overhead benchmark.

It answers ``POST /v1/chat/completions`` at once with one fixed, small ``chat.completion``
body, whatever the request says, and ``GET /v1/models`` with a one-model list; anything
else is a 404. It is a raw :class:`asyncio.Protocol` on uvloop (when installed) with
keep-alive HTTP/1.1, so that the upstream costs far less per request than anything put in
front of it and is never the bottleneck. Only the standard library is required.

Usage::

    python bench/_upstream.py --port 0        # prints "READY <port>" once it listens
    python bench/_upstream.py --delay-ms 20   # answer each request 20 ms late (no CPU spent)

It serves until it gets SIGINT or SIGTERM. It understands exactly what HTTP/1.1 clients send
to an OpenAI endpoint (``Content-Length`` or chunked bodies, keep-alive, ``Connection:
close``) and nothing more; it is a benchmark fixture, not a web server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import cast

MODEL = "gpt-4o-mini"

COMPLETION: dict[str, object] = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": MODEL,
    "system_fingerprint": "fp_bench",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello from the bench upstream."},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15},
}
MODELS: dict[str, object] = {
    "object": "list",
    "data": [{"id": MODEL, "object": "model", "created": 1_700_000_000, "owned_by": "bench"}],
}

_MAX_HEAD = 64 * 1024
_MAX_BODY = 8 * 1024 * 1024


def _response(status: str, body: bytes, *, close: bool = False) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"connection: {'close' if close else 'keep-alive'}\r\n\r\n"
    )
    return head.encode("ascii") + body


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


CHAT_RESPONSE = _response("200 OK", _json(COMPLETION))
MODELS_RESPONSE = _response("200 OK", _json(MODELS))
NOT_FOUND = _json({"error": {"message": "not found", "type": "invalid_request_error"}})
BAD_REQUEST = _response("400 Bad Request", _json({"error": {"message": "bad request"}}), close=True)


class _Malformed(Exception):
    pass


class UpstreamProtocol(asyncio.Protocol):
    """One keep-alive connection: parse each request's head and body, answer from constants.

    With ``delay`` > 0 each answer is written that many seconds later by a timer, as a model
    that takes time to answer would, without spending CPU; answers keep the requests' order.
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.delay = delay

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            while self.transport is not None and self._serve_one():
                pass
        except _Malformed:
            if self.transport is not None:
                self.transport.write(BAD_REQUEST)
                self.transport.close()
                self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def _serve_one(self) -> bool:
        """Answer one complete request from the buffer; False when more bytes are needed."""
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > _MAX_HEAD:
                raise _Malformed
            return False
        lines = bytes(buffer[:end]).split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            raise _Malformed
        method, target = parts[0], parts[1]
        length = 0
        chunked = False
        close = parts[2] == b"HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise _Malformed from None
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = value.strip().lower() == b"close"
        start = end + 4
        if chunked:
            consumed = _chunked_length(buffer, start)
            if consumed is None:
                return False
            body_end = consumed
        else:
            if length > _MAX_BODY:
                raise _Malformed
            body_end = start + length
            if len(buffer) < body_end:
                return False
        del buffer[:body_end]
        assert self.transport is not None
        path = target.split(b"?", 1)[0]
        if method == b"POST" and path == b"/v1/chat/completions":
            answer = CHAT_RESPONSE
        elif method == b"GET" and path == b"/v1/models":
            answer = MODELS_RESPONSE
        else:
            answer = _response("404 Not Found", NOT_FOUND)
        if self.delay > 0:
            asyncio.get_running_loop().call_later(self.delay, self._answer, answer, close)
            return not close
        self._answer(answer, close)
        return not close

    def _answer(self, answer: bytes, close: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(answer)
        if close:
            transport.close()
            self.transport = None


def _chunked_length(buffer: bytearray, start: int) -> int | None:
    """The offset just past a chunked body starting at ``start``, or None if incomplete."""
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        try:
            size = int(bytes(buffer[position:line_end]).split(b";", 1)[0], 16)
        except ValueError:
            raise _Malformed from None
        position = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", position - 2)
            return None if trailer_end < 0 else trailer_end + 4
        position += size + 2
        if len(buffer) < position:
            return None
        if position - start > _MAX_BODY:
            raise _Malformed


async def serve(host: str, port: int, delay: float = 0.0) -> None:
    """Listen on ``host:port`` (0 picks a free port), print ``READY <port>``, serve until told."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: UpstreamProtocol(delay), host, port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"READY {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """Parse ``--host`` and ``--port`` and serve, on uvloop when it is installed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--delay-ms", type=float, default=0.0, help="answer each request this much later"
    )
    args = parser.parse_args(argv)
    delay = max(0.0, args.delay_ms / 1000.0)
    try:
        import uvloop
    except ModuleNotFoundError:
        print("uvloop is not installed; using asyncio's default loop", file=sys.stderr)
        asyncio.run(serve(args.host, args.port, delay))
    else:
        uvloop.run(serve(args.host, args.port, delay))


if __name__ == "__main__":
    main()
