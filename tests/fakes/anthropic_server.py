"""A local stand-in for Anthropic's Messages API, speaking its real wire format.

Routes: ``POST /v1/messages`` (a ``message`` object, or the real event sequence
``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``…,
``content_block_stop``, ``message_delta``, ``message_stop``) and ``GET /v1/models``. Every route
checks ``x-api-key`` (or the bearer token recent SDKs send instead) and
``anthropic-version`` and answers with Anthropic's error bodies,
``{"type": "error", "error": {"type", "message"}}``. Like the real API it refuses a request
without ``max_tokens`` or with a ``system`` role inside ``messages``. Answers and fault triggers
are described in :mod:`tests.fakes._vendor` (``[[status:529]]`` gives ``overloaded_error``);
every request is recorded in :attr:`FakeAnthropic.requests`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes._vendor import (
    SLOW_SECONDS,
    Faults,
    RequestLog,
    answer,
    count_tokens,
    last_user,
    pieces,
    record,
    stall,
)

__all__ = ["MODELS", "FakeAnthropic"]

MODELS = ["claude-haiku-4-5", "claude-sonnet-4-6"]

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "seq": "stop_sequence"}


def error_body(kind: str, message: str) -> dict[str, Any]:
    """Anthropic's error body."""
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_response(status: int, message: str | None = None) -> JSONResponse:
    """An HTTP error as Anthropic sends it (``retry-after: 1`` on 429)."""
    kind, default = _ERRORS.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", "Error.")
    )
    headers = {"request-id": "req_fake"}
    if status == 429:
        headers["retry-after"] = "1"
    return JSONResponse(error_body(kind, message or default), status_code=status, headers=headers)


def _text(content: Any) -> str:
    """The text of a message's ``content``: a string or a list of text blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


class FakeAnthropic:
    """The fake's state and its ASGI app.

    Attributes:
        api_key: the only key the fake accepts.
        requests: every request received, in order.
        app: the Starlette app to serve (see :func:`tests.fakes._server.run_asgi`).
    """

    def __init__(self, *, api_key: str = "sk-ant-fake-key") -> None:
        self.api_key = api_key
        self.requests = RequestLog()
        self.app = Starlette(
            routes=[
                Route("/v1/messages", self._messages, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    def _refusal(self, request: Request) -> Response | None:
        key = request.headers.get("x-api-key")
        if key is None and request.headers.get("authorization", "").startswith("Bearer "):
            # Recent official SDKs send the API key as a bearer token instead.
            key = request.headers["authorization"].removeprefix("Bearer ")
        if key is None:
            return error_response(401, "x-api-key header is required")
        if key != self.api_key:
            return error_response(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return error_response(400, "anthropic-version: header is required")
        return None

    async def _models(self, request: Request) -> Response:
        await record(self.requests, request)
        refused = self._refusal(request)
        if refused is not None:
            return refused
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2024-10-22T00:00:00Z"}
            for m in MODELS
        ]
        return JSONResponse(
            {"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]}
        )

    async def _messages(self, request: Request) -> Response:
        body = await record(self.requests, request)
        refused = self._refusal(request)
        if refused is not None:
            return refused
        if not isinstance(body, dict):
            return error_response(400, "Request body is not valid JSON.")
        model, messages, limit = body.get("model"), body.get("messages"), body.get("max_tokens")
        if not isinstance(model, str) or not model:
            return error_response(400, "model: Field required")
        if not isinstance(limit, int) or limit < 1:
            return error_response(400, "max_tokens: Field required")
        if not isinstance(messages, list) or not messages:
            return error_response(400, "messages: at least one message is required")
        for index, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in ("user", "assistant"):
                return error_response(
                    400,
                    f"messages.{index}.role: Input should be 'user' or 'assistant'"
                    + (
                        " (the Messages API takes a top-level `system` parameter)"
                        if role == "system"
                        else ""
                    ),
                )
        contents = [_text(m.get("content")) for m in messages]
        system = _text(body.get("system"))
        last = last_user([(m["role"], c) for m, c in zip(messages, contents, strict=True)])
        faults = Faults.parse(last)
        if faults.status is not None:
            return error_response(faults.status)
        if faults.stall:
            await stall(request)
        stops = body.get("stop_sequences")
        text, sequence, reason = answer(
            last, max_tokens=limit, stop=stops if isinstance(stops, list) else None
        )
        input_tokens = count_tokens(system) + sum(count_tokens(c) for c in contents)
        output_tokens = count_tokens(text)
        if body.get("stream"):
            events = _stream(model, text, _STOP_REASONS[reason], sequence, input_tokens, faults)
            return StreamingResponse(events, media_type="text/event-stream")
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": _STOP_REASONS[reason],
            "stop_sequence": sequence,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }
        if faults.garbage:
            return Response("upstream connect error or disconnect/reset", media_type="text/plain")
        if faults.cut:
            encoded = json.dumps(message)
            return Response(encoded[: len(encoded) // 2], media_type="application/json")
        return JSONResponse(message, headers={"request-id": "req_fake"})


def _event(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"


async def _stream(
    model: str,
    text: str,
    stop_reason: str,
    sequence: str | None,
    input_tokens: int,
    faults: Faults,
) -> AsyncIterator[str]:
    start: dict[str, Any] = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
    }
    yield _event("message_start", {"message": start})
    if faults.garbage:
        yield "event: content_block_start\ndata: {not json at all\n\n"
        return
    yield _event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    yield _event("ping", {})
    parts = pieces(text)
    if faults.cut or faults.stream_error:
        parts = parts[:2]
    for part in parts:
        if faults.slow:
            await anyio.sleep(SLOW_SECONDS)
        yield _event(
            "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": part}}
        )
    if faults.cut:
        return
    if faults.stream_error:
        yield _event("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})
        return
    yield _event("content_block_stop", {"index": 0})
    yield _event(
        "message_delta",
        {
            "delta": {"stop_reason": stop_reason, "stop_sequence": sequence},
            "usage": {"output_tokens": count_tokens(text)},
        },
    )
    yield _event("message_stop", {})
