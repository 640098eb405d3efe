"""Pure-ASGI middleware on the hot path: request ids, the request-size limit and the HTTP
duration histogram. Pure ASGI (not ``BaseHTTPMiddleware``) keeps streaming responses
unbuffered and adds well under a millisecond per request."""

from __future__ import annotations

import itertools
import json
import os
import secrets
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from somaagent.gateway.metrics import Metrics
from somaagent.gateway.problems import PROBLEM_JSON

_UNMATCHED = "unmatched"

# Request ids need to be unique, not secret: 16 hex digits, counting from a random start per
# process (fresh randomness per request cost more than the rest of this middleware). A forked
# worker starts again from its own random point, so workers forked from one parent differ.
_ID_MASK = (1 << 64) - 1
_ID_START = secrets.randbits(64)
_id_counter = itertools.count()


def _restart_ids() -> None:
    global _ID_START, _id_counter
    _ID_START = secrets.randbits(64)
    _id_counter = itertools.count()


os.register_at_fork(after_in_child=_restart_ids)


def new_request_id() -> str:
    """A request id for a request that brought none: 16 hex digits, unique in the process."""
    return f"{(_ID_START + next(_id_counter)) & _ID_MASK:016x}"


class _TooLarge(Exception):
    pass


class GatewayMiddleware:
    """Gives each request an id (``x-request-id``), refuses bodies over ``max_body`` bytes
    with a 413 problem, and observes the request duration by route template and status."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        incoming, declared = _read_headers(scope)
        request_id = incoming or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            if declared is not None and declared > self.max_body:
                raise _TooLarge
            await self.app(scope, self._limited(receive), send_wrapper)
        except _TooLarge:
            if started:
                raise
            status = 413
            await _send_problem(send, 413, request_id, self.max_body)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or _UNMATCHED
            self.metrics.observe_http(
                scope["method"], template, status, time.perf_counter() - start
            )

    def _limited(self, receive: Receive) -> Receive:
        received = 0

        async def wrapped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    # an HTTPException passes FastAPI's body parsing and reaches the
                    # problem+json handler as a 413
                    raise HTTPException(413, detail=_too_large_detail(self.max_body))
            return message

        return wrapped


def _read_headers(scope: Scope) -> tuple[str | None, int | None]:
    """In one pass: the first usable ``x-request-id`` (1-64 printable characters), and the
    first ``content-length`` (None when it is not a number)."""
    request_id: str | None = None
    length: int | None = None
    seen_length = False
    for name, value in scope.get("headers", []):
        if name == b"x-request-id" and request_id is None:
            text: str = value.decode("latin-1")
            if 0 < len(text) <= 64 and text.isprintable():
                request_id = text
        elif name == b"content-length" and not seen_length:
            seen_length = True
            try:
                length = int(value)
            except ValueError:
                length = None
    return request_id, length


def _too_large_detail(limit: int) -> str:
    return f"request body exceeds the limit of {limit} bytes (SOMA_MAX_REQUEST_BYTES)"


async def _send_problem(send: Send, status: int, request_id: str, limit: int) -> None:
    body: dict[str, Any] = {
        "type": "urn:somaagent:problem:payload-too-large",
        "title": "Payload too large",
        "status": status,
        "detail": _too_large_detail(limit),
        "request_id": request_id,
    }
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(payload)).encode()),
                (b"x-request-id", request_id.encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
