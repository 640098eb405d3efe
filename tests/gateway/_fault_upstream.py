"""An OpenAI-wire upstream whose faults are set per model, for the provider-fault suite.

:mod:`tests.fakes.openai_server` reads its faults from the message, so every model of a
fallback chain fails alike; here each model name has its own behaviour, so a chain can fail
on one model and recover on the next. It answers ``"Echo: " + <last user message>`` and counts
the calls it received per model (the figure the gateway's metrics must agree with).

Faults: ``ok``, ``429`` (with ``Retry-After: 1``), ``500``, ``stall`` (no answer until the
client hangs up), ``cut`` (a stream ends after two pieces without ``[DONE]``; a plain answer is
truncated JSON), ``garbage`` (a body that is not JSON), ``flap`` (fails with 500 on every other
call), ``slow_first`` (the first token after 0.4 s).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes._vendor import pieces

API_KEY = "sk-fault-upstream"
FAULTS = ("ok", "429", "500", "stall", "cut", "garbage", "flap", "slow_first")


class FaultUpstream:
    """The upstream's state (``faults`` by model, ``calls`` by model) and its ASGI app."""

    def __init__(self) -> None:
        self.faults: dict[str, str] = {}
        self.calls: Counter[str] = Counter()
        self._flaps: Counter[str] = Counter()
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    def reset(self, **faults: str) -> None:
        self.faults = dict(faults)
        self.calls.clear()
        self._flaps.clear()

    async def _chat(self, request: Request) -> Response:
        body: dict[str, Any] = json.loads(await request.body())
        model = str(body["model"])
        self.calls[model] += 1
        fault = self.faults.get(model, "ok")
        if fault == "flap":
            self._flaps[model] += 1
            fault = "500" if self._flaps[model] % 2 == 1 else "ok"
        if fault in ("429", "500"):
            status = int(fault)
            error = {
                "message": f"fault {status}",
                "type": "server_error",
                "param": None,
                "code": None,
            }
            headers = {"retry-after": "1"} if status == 429 else None
            return JSONResponse({"error": error}, status_code=status, headers=headers)
        if fault == "stall":
            with anyio.move_on_after(30):
                while not await request.is_disconnected():
                    await anyio.sleep(0.05)
            return Response(status_code=504)
        last = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
        text = f"Echo: {last}"
        usage = {"prompt_tokens": 3, "completion_tokens": len(text.split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if body.get("stream"):
            return StreamingResponse(
                _events(model, text, usage, fault), media_type="text/event-stream"
            )
        completion = {
            "id": "chatcmpl-fault",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
        encoded = json.dumps(completion)
        if fault == "garbage":
            return Response("<html>502 Bad Gateway</html>", media_type="text/html")
        if fault == "cut":
            return Response(encoded[: len(encoded) // 2], media_type="application/json")
        if fault == "slow_first":
            await anyio.sleep(0.4)
        return Response(encoded, media_type="application/json")


async def _events(model: str, text: str, usage: dict[str, int], fault: str) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        payload = {
            "id": "c",
            "object": "chat.completion.chunk",
            "model": model,
            "choices": [choice],
        }
        return f"data: {json.dumps(payload)}\n\n"

    if fault == "slow_first":
        await anyio.sleep(0.4)
    yield chunk({"role": "assistant", "content": ""})
    if fault == "garbage":
        yield "data: {not json\n\n"
        return
    parts = pieces(text)
    for part in parts[:2] if fault == "cut" else parts:
        yield chunk({"content": part})
    if fault == "cut":
        return
    yield chunk({}, "stop")
    final = {
        "id": "c",
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [],
        "usage": usage,
    }
    yield f"data: {json.dumps(final)}\n\n"
    yield "data: [DONE]\n\n"
