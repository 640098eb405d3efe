"""A local stand-in for OpenAI's API, speaking its real wire format.

Routes: ``POST /v1/chat/completions`` (``chat.completion`` objects, or ``chat.completion.chunk``
Server-Sent Events ending in ``data: [DONE]``, with a final usage chunk when
``stream_options.include_usage`` is set) and ``GET /v1/models``. Every route checks the bearer
key and answers a wrong one with OpenAI's 401 body. Answers and fault triggers are described in
:mod:`tests.fakes._vendor`; every request is recorded in :attr:`FakeOpenAI.requests`.
"""

from __future__ import annotations

import json
import time
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

__all__ = ["MODELS", "FakeOpenAI"]

MODELS = ["gpt-4o-mini", "gpt-4o"]
_CREATED = 1_700_000_000

_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def error_response(
    status: int,
    message: str | None = None,
    *,
    kind: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> JSONResponse:
    """OpenAI's error body, ``{"error": {"message", "type", "param", "code"}}``."""
    default_kind, default_code, default_message = _ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, "Error.")
    )
    body = {
        "error": {
            "message": message or default_message,
            "type": kind or default_kind,
            "param": param,
            "code": code or default_code,
        }
    }
    headers = {"retry-after": "1"} if status == 429 else None
    return JSONResponse(body, status_code=status, headers=headers)


class FakeOpenAI:
    """The fake's state and its ASGI app.

    Attributes:
        api_key: the only key the fake accepts.
        requests: every request received, in order.
        app: the Starlette app to serve (see :func:`tests.fakes._server.run_asgi`).
    """

    def __init__(self, *, api_key: str = "sk-fake-openai-key") -> None:
        self.api_key = api_key
        self.requests = RequestLog()
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    def _auth_error(self, request: Request) -> Response | None:
        header = request.headers.get("authorization")
        if header is None:
            return error_response(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code=None,
            )
        if header != f"Bearer {self.api_key}":
            shown = header.removeprefix("Bearer ")[:8]
            return error_response(
                401,
                f"Incorrect API key provided: {shown}****. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )
        return None

    async def _models(self, request: Request) -> Response:
        await record(self.requests, request)
        denied = self._auth_error(request)
        if denied is not None:
            return denied
        data = [
            {"id": name, "object": "model", "created": _CREATED, "owned_by": "system"}
            for name in MODELS
        ]
        return JSONResponse({"object": "list", "data": data})

    async def _chat(self, request: Request) -> Response:
        body = await record(self.requests, request)
        denied = self._auth_error(request)
        if denied is not None:
            return denied
        if not isinstance(body, dict):
            return error_response(400, "We could not parse the JSON body of your request.")
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            return error_response(400, "you must provide a model parameter", param="model")
        if (
            not isinstance(messages, list)
            or not messages
            or not all(isinstance(m, dict) and "role" in m for m in messages)
        ):
            return error_response(
                400, "Invalid 'messages': expected a non-empty array.", param="messages"
            )
        contents = [m.get("content") if isinstance(m.get("content"), str) else "" for m in messages]
        last = last_user([(m["role"], c) for m, c in zip(messages, contents, strict=True)])
        faults = Faults.parse(last)
        if faults.status is not None:
            return error_response(faults.status)
        if faults.stall:
            await stall(request)
        stop = body.get("stop")
        stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else None
        limit = body.get("max_tokens")
        limit = limit if isinstance(limit, int) else None
        text, _, reason = answer(last, max_tokens=limit, stop=stops)
        finish = "length" if reason == "length" else "stop"
        usage = {
            "prompt_tokens": sum(count_tokens(c) for c in contents),
            "completion_tokens": count_tokens(text),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if body.get("stream"):
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            events = _stream(model, text, finish, usage if include_usage else None, faults)
            return StreamingResponse(events, media_type="text/event-stream")
        completion = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": usage,
        }
        if faults.garbage:
            return Response("<html><body>502 Bad Gateway</body></html>", media_type="text/html")
        if faults.cut:
            encoded = json.dumps(completion)
            return Response(encoded[: len(encoded) // 2], media_type="application/json")
        return JSONResponse(completion)


async def _stream(
    model: str, text: str, finish: str, usage: dict[str, int] | None, faults: Faults
) -> AsyncIterator[str]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
        payload: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if usage is not None:
            payload["usage"] = None
        return f"data: {json.dumps(payload)}\n\n"

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    if faults.garbage:
        yield "data: {this is not json\n\n"
        yield "data: [DONE]\n\n"
        return
    parts = pieces(text)
    if faults.cut or faults.stream_error:
        parts = parts[:2]
    for part in parts:
        if faults.slow:
            await anyio.sleep(SLOW_SECONDS)
        yield chunk({"content": part})
    if faults.cut:
        return
    if faults.stream_error:
        error = {
            "error": {
                "message": "The server had an error while processing your request.",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
        yield f"data: {json.dumps(error)}\n\n"
        return
    yield chunk({}, finish)
    if usage is not None:
        final = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [],
            "usage": usage,
        }
        yield f"data: {json.dumps(final)}\n\n"
    yield "data: [DONE]\n\n"
