"""OpenAI-compatible endpoints: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Existing OpenAI clients work unchanged: the request and response bodies, the stream's
``chat.completion.chunk`` objects and the closing ``data: [DONE]`` follow OpenAI's wire.
Fields OpenAI defines but SomaAgent does not act on (``seed``, ``user``, ...) are accepted
and ignored; ones that would change the answer and are not supported (``n`` > 1, tools,
images) are a 422 naming the field rather than a silently different answer.

``POST /v1/chat/completions`` is the gateway's hot path, so its route skips FastAPI's
per-request dependency solving when it can (:class:`LeanJSONRoute`): a JSON body that
validates goes straight to the endpoint, with the caller authenticated by one plain call;
anything else (another content type, a body that does not parse or validate, dependency
overrides) takes FastAPI's own path, so errors and their problem+json bodies are FastAPI's,
word for word. The route is declared as usual, so the OpenAPI document is unchanged.

The completion itself (budget, routing, the fallback chain, metrics, charging the key, outcome
records) is :class:`~somaagent.chat.completions.ChatCompletions`; this module translates the
wire to its calls and its answers and events to OpenAI's payload, chunks and headers.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse

from somaagent.chat.completions import CompletionAnswer, CompletionEvent
from somaagent.gateway.auth import CurrentPrincipal, State
from somaagent.gateway.headers import model_headers, route_headers
from somaagent.gateway.lean_route import LeanJSONRoute, json_response
from somaagent.gateway.problems import problem_body, to_api_error
from somaagent.gateway.routes._openai_wire import (
    ChatCompletionRequest,
    completion_payload,
    to_chat_messages,
    usage_json,
)
from somaagent.gateway.routes._openai_wire import completion_id as new_completion_id
from somaagent.gateway.streaming import SSE_HEADERS, SSE_MEDIA_TYPE, sse_data

router = APIRouter(prefix="/v1", tags=["openai"])


async def chat_completions(
    body: ChatCompletionRequest, who: CurrentPrincipal, state: State
) -> Response:
    """Create a chat completion, OpenAI-style (``model: "auto"`` or a ``policy`` routes)."""
    completions = state.completions
    spec = await completions.admit(who, body.model, body.policy)
    call = await completions.prepare(
        who,
        spec,
        to_chat_messages(body.messages),
        policy=body.policy,
        prompt=body.prompt,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        stop=[body.stop] if isinstance(body.stop, str) else body.stop,
        stream=body.stream,
    )
    now = time.time()
    completion_id, created = new_completion_id(now), int(now)
    if body.stream:
        # Opened before the answer starts: a failure before the first token is a real error
        # status (and retried like any model call), not a 200 followed by an error event.
        opened = await completions.open_stream(who, call)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = _chunks(
            opened.events(outcome_id=completion_id),
            completion_id,
            created,
            opened.spec.name,
            include_usage,
        )
        route = opened.route
        headers = model_headers(opened.spec.name) if route is None else route_headers(route)
        return StreamingResponse(
            chunks, media_type=SSE_MEDIA_TYPE, headers={**SSE_HEADERS, **headers}
        )
    answer = await completions.complete(who, call, outcome_id=completion_id)
    payload = completion_payload(completion_id, created, answer.spec, answer.completion)
    if answer.route is None:
        return json_response(payload, model_headers(answer.spec.name, answer.cost_usd))
    payload["soma_route"] = _soma_route(answer)
    return json_response(payload, route_headers(answer.route))


def _soma_route(answer: CompletionAnswer) -> dict[str, Any]:
    """The payload's ``soma_route``: the model, the router's reason and every try."""
    assert answer.decision is not None
    return {
        "model": answer.spec.name,
        "reason": answer.decision.reason,
        "estimated_cost_usd": answer.decision.estimated_cost_usd,
        "attempts": [a.describe() for a in answer.attempts],
    }


router.add_api_route(
    "/chat/completions",
    chat_completions,
    methods=["POST"],
    response_model=None,
    route_class_override=LeanJSONRoute,
)


async def _chunks(
    events: AsyncGenerator[CompletionEvent, None],
    completion_id: str,
    created: int,
    model: str,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """The answer's events as OpenAI's chunks, then ``[DONE]``; a failure part-way is an
    ``error`` object with no ``[DONE]`` after it."""

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            ],
        }

    yield sse_data(chunk({"role": "assistant", "content": ""}))
    async with aclosing(events) as settled:
        async for event in settled:
            if event.kind == "delta":
                yield sse_data(chunk({"content": event.delta}))
            elif event.kind == "error":
                assert event.error is not None
                problem = problem_body(to_api_error(event.error), None)
                # OpenAI's clients raise on an ``error`` object in the stream; no [DONE]
                # follows, so the stream cannot pass for a complete answer.
                yield sse_data(
                    {
                        "error": {
                            "message": problem["detail"],
                            "type": problem["type"],
                            "code": problem["status"],
                        }
                    }
                )
                return
            else:
                assert event.usage is not None
                yield sse_data(chunk({}, event.finish_reason))
                if include_usage:
                    final = chunk({})
                    final["choices"] = []
                    final["usage"] = usage_json(event.usage)
                    yield sse_data(final)
                yield sse_data("[DONE]")


@router.get("/models")
async def list_models(who: CurrentPrincipal, state: State) -> dict[str, Any]:
    """Every registry model, OpenAI-style, with SomaAgent's prices and availability."""
    state.pool.registry.reload_if_changed()
    data = []
    for spec in state.pool.registry.all():
        data.append(
            {
                "id": spec.name,
                "object": "model",
                "created": 0,
                "owned_by": spec.provider,
                "provider": spec.provider,
                "provider_model_id": spec.provider_model_id,
                "context_window": spec.context_window,
                "max_output_tokens": spec.max_output_tokens,
                "input_cost_per_mtok": spec.input_cost_per_mtok,
                "output_cost_per_mtok": spec.output_cost_per_mtok,
                "available": state.pool.is_available(spec),
            }
        )
    return {"object": "list", "data": data}
