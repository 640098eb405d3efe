"""Pure-ASGI middleware on the hot path: request ids, authentication before a body is read,
the request-size limit, text that cannot be stored refused at the edge, unhandled errors
answered without dropping the connection, and the HTTP duration histogram. Pure ASGI (not
``BaseHTTPMiddleware``) keeps streaming responses unbuffered and adds well under a millisecond
per request.

Why unhandled errors end here: Starlette's outermost error middleware answers 500 and then
re-raises, and uvicorn closes a connection whose app raised after its response started — with
no ``Connection: close`` header, so a client that reuses the keep-alive connection has its next
request reset. Answering the problem here and returning normally keeps the connection usable.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from somaagent.db.ids import CountingIds
from somaagent.errors import APIError, ValidationError
from somaagent.gateway.auth import authenticate_request
from somaagent.gateway.metrics import Metrics
from somaagent.gateway.problems import (
    PROBLEM_JSON,
    problem_body,
    retry_after_header,
    to_api_error,
)

log = logging.getLogger("somaagent.gateway")

_UNMATCHED = "unmatched"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# A JSON escape that may decode to a lone surrogate or NUL. A match only triggers the exact
# check (a decoded walk), so an escaped backslash before it costs a parse, never a refusal.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:[dD][89a-fA-F][0-9a-fA-F]{2}|0000)")

_request_ids = CountingIds(64)


def new_request_id() -> str:
    """A request id for a request that brought none: 16 hex digits, unique in the process."""
    return f"{_request_ids.next():016x}"


class _TooLarge(Exception):
    pass


class _ClientGone(Exception):
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
        incoming, declared, content_type = _read_headers(scope)
        request_id = incoming or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = False
        streamed = False
        stream_failed: int | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started, streamed, stream_failed
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                streamed = any(
                    name == b"content-type" and value.startswith(b"text/event-stream")
                    for name, value in headers
                )
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            elif streamed and stream_failed is None and message["type"] == "http.response.body":
                stream_failed = _stream_error_status(message.get("body", b""))
            await send(message)

        try:
            has_body = scope["method"] in _BODY_METHODS and scope["path"].startswith("/v1/")
            if has_body:
                # who is asking comes before what the body says (or how big it is)
                await authenticate_request(Request(scope))
            if declared is not None and declared > self.max_body:
                raise _TooLarge
            if has_body and _may_be_json(content_type):
                body = await self._read_body(receive)
                refused = _unstorable_text(body)
                if refused is not None:
                    raise refused
                receive = _replay(body, receive)
            await self.app(scope, self._limited(receive), send_wrapper)
        except _TooLarge:
            if started:
                raise
            status = 413
            await _send_problem(send, 413, request_id, self.max_body)
        except _ClientGone:
            status = 499  # nginx's "client closed request": nobody is left to answer
        except Exception as exc:
            if started:
                raise  # a stream that broke mid-way: only closing the connection can say so
            error = to_api_error(exc)
            if not isinstance(exc, APIError):
                log.exception("unhandled error", extra={"request_id": request_id})
            status = error.status_code
            await _send_api_error(send, error, request_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or _UNMATCHED
            # a stream that ended in an error event is counted with the error's status, not
            # the 200 its headers went out with before the failure
            self.metrics.observe_http(
                scope["method"], template, stream_failed or status, time.perf_counter() - start
            )

    async def _read_body(self, receive: Receive) -> bytes:
        """The whole request body (at most ``max_body`` bytes, else :class:`_TooLarge`)."""
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _ClientGone
            chunk: bytes = message.get("body", b"")
            received += len(chunk)
            if received > self.max_body:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

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


def _read_headers(scope: Scope) -> tuple[str | None, int | None, bytes | None]:
    """In one pass: the first usable ``x-request-id`` (1-64 printable characters), the first
    ``content-length`` (None when it is not a number) and the first ``content-type``."""
    request_id: str | None = None
    length: int | None = None
    content_type: bytes | None = None
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
        elif name == b"content-type" and content_type is None:
            content_type = value
    return request_id, length, content_type


_STREAM_ERROR = re.compile(
    rb'(?:^|\n)event: error\n(?:id: [^\n]*\n)?data: \{.*?"status":(\d{3})'
    rb'|(?:^|\n)data: \{"error":\{.*?"code":(\d{3})'
)


def _stream_error_status(chunk: bytes) -> int | None:
    """The status of the error event in a chunk of Server-Sent Events, if it has one: the
    ``status`` of a conversation's ``error`` event, or the ``code`` of an OpenAI-style
    ``{"error": ...}`` data line."""
    if b"error" not in chunk:
        return None
    found = _STREAM_ERROR.search(chunk)
    if found is None:
        return None
    return int(found.group(1) or found.group(2))


def _may_be_json(content_type: bytes | None) -> bool:
    """Whether FastAPI would read this body as JSON (no content type, or a JSON one)."""
    return content_type is None or b"json" in content_type.lower()


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over ``body`` once, then waits on the real one (disconnects)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _bad_text(text: str) -> str | None:
    """Why ``text`` cannot be stored and answered, or None when it can."""
    if "\x00" in text:
        return "text must not contain NUL (U+0000) characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text must be valid Unicode (a lone surrogate such as \\ud800 is not)"
    return None


def _find_bad_text(value: Any, loc: list[str | int]) -> tuple[list[str | int], str] | None:
    if isinstance(value, str):
        why = _bad_text(value)
        return (loc, why) if why else None
    if isinstance(value, dict):
        for key, item in value.items():
            why = _bad_text(key)
            if why:
                return [*loc, key.encode("utf-8", "backslashreplace").decode()], why
            found = _find_bad_text(item, [*loc, key])
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _find_bad_text(item, [*loc, index])
            if found:
                return found
    return None


def _unstorable_text(body: bytes) -> ValidationError | None:
    """A 422 naming the first string of a JSON body that no database could store and no
    JSON answer could carry (a lone surrogate, NUL); None for every other body, including
    bodies that are not JSON (the route's own parsing answers those)."""
    if _SUSPECT_ESCAPE.search(body) is None:
        return None
    try:
        decoded = json.loads(body)
    except ValueError:
        return None
    return unstorable_text(decoded, ["body"])


def unstorable_text(value: Any, loc: list[str | int]) -> ValidationError | None:
    """A 422 naming the first string in ``value`` (decoded JSON found at ``loc``) that no
    database could store and no JSON answer could carry; None when there is none. For
    routes that decode JSON the middleware did not see (a multipart form's field)."""
    found = _find_bad_text(value, loc)
    if found is None:
        return None
    loc, why = found
    where = ".".join(str(part) for part in loc)
    return ValidationError(
        f"invalid request: {where}: {why}",
        errors=[{"loc": loc, "msg": why, "type": "value_error.unicode"}],
    )


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


async def _send_api_error(send: Send, error: APIError, request_id: str) -> None:
    payload = json.dumps(problem_body(error, request_id)).encode()
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(payload)).encode()),
        (b"x-request-id", request_id.encode()),
    ]
    extra = {**error.headers, **retry_after_header(error)}
    headers.extend((name.lower().encode(), value.encode()) for name, value in extra.items())
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
