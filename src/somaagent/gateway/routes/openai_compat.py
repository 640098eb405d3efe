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
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse

from somaagent.accounts.keys import Principal
from somaagent.chat.context import check_max_tokens
from somaagent.chat.events import Route
from somaagent.errors import APIError, ProviderError
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
from somaagent.gateway.state import GatewayState
from somaagent.gateway.streaming import SSE_HEADERS, SSE_MEDIA_TYPE, sse_data
from somaagent.llm import cost, tokens
from somaagent.llm.base import ChatMessage, ChatRequest
from somaagent.llm.fallback import FallbackStream, complete_with_fallback, stream_with_fallback
from somaagent.llm.policy import RoutingDecision
from somaagent.llm.specs import ModelSpec
from somaagent.types import Usage

log = logging.getLogger("somaagent.gateway")

router = APIRouter(prefix="/v1", tags=["openai"])


def _soma_headers(spec: ModelSpec, usage: Usage | None) -> dict[str, str]:
    return model_headers(spec.name, cost.cost_usd(spec, usage) if usage is not None else None)


async def chat_completions(
    body: ChatCompletionRequest, who: CurrentPrincipal, state: State
) -> Response:
    """Create a chat completion, OpenAI-style (``model: "auto"`` or a ``policy`` routes)."""
    await state.usage.check_budget(who)
    routed = body.model == "auto" or body.policy is not None
    spec = None if routed else state.pool.resolve(body.model)
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    messages = to_chat_messages(body.messages)
    if body.prompt is not None:
        rendered = await state.prompts.render(
            who.tenant,
            body.prompt.name,
            body.prompt.variables,
            loc=("body", "prompt", "variables"),
            ref_loc=("body", "prompt", "name"),
        )
        messages.insert(0, {"role": rendered.role, "content": rendered.content})
    max_tokens = body.max_completion_tokens or body.max_tokens
    if spec is None:
        return await _routed(state, who, body, messages, max_tokens=max_tokens, stop=stop)
    check_max_tokens(spec, max_tokens)
    request = ChatRequest(
        messages=messages,
        model=spec.provider_model_id,
        max_tokens=max_tokens,
        temperature=body.temperature,
        stop=stop,
    )
    adapter = await state.pool.adapter(spec)
    now = time.time()
    completion_id = new_completion_id(now)
    created = int(now)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        # Opened before the answer starts: a failure before the first token is a real error
        # status (and retried like any model call), not a 200 followed by an error event.
        opened = await _open_stream(state, (spec,), request)
        chunks = _stream(
            state, who, spec, request, completion_id, created, include_usage, opened=opened
        )
        return StreamingResponse(
            chunks, media_type=SSE_MEDIA_TYPE, headers={**SSE_HEADERS, **_soma_headers(spec, None)}
        )
    started = time.perf_counter()
    try:
        completion = await adapter.complete(request)
    except ProviderError as exc:
        state.metrics.record_model_call(
            provider=spec.provider,
            model=spec.name,
            seconds=time.perf_counter() - started,
            error_type=type(exc).__name__,
        )
        raise
    state.metrics.record_model_call(
        provider=spec.provider,
        model=spec.name,
        seconds=time.perf_counter() - started,
        input_tokens=completion.usage.prompt_tokens,
        output_tokens=completion.usage.completion_tokens,
    )
    _charge(state, who, spec, completion.usage)
    return json_response(
        completion_payload(completion_id, created, spec, completion),
        _soma_headers(spec, completion.usage),
    )


def _charge(state: GatewayState, who: Principal, spec: ModelSpec, usage: Usage) -> None:
    state.usage.record(
        who,
        endpoint="chat.completions",
        model=spec.name,
        provider=spec.provider,
        usage=usage,
        cost_usd=cost.cost_usd(spec, usage),
    )


async def _routed(
    state: GatewayState,
    who: Principal,
    body: ChatCompletionRequest,
    messages: list[ChatMessage],
    *,
    max_tokens: int | None,
    stop: list[str] | None,
) -> Response:
    """``model: "auto"`` or a policy: the router's choice, down its fallback chain."""
    decision = state.turns.decide(
        "auto",
        body.policy,
        messages,
        max_tokens=max_tokens,
        stream=body.stream,
        tenant=who.tenant,
    )
    request = ChatRequest(
        messages=messages,
        model=decision.spec.provider_model_id,
        max_tokens=max_tokens,
        temperature=body.temperature,
        stop=stop,
    )
    now = time.time()
    completion_id, created = new_completion_id(now), int(now)
    if body.stream:
        opened = await _open_stream(state, decision.chain, request)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = _stream(
            state,
            who,
            opened.spec,
            request,
            completion_id,
            created,
            include_usage,
            opened=opened,
            decision=decision,
        )
        headers = {**SSE_HEADERS, **route_headers(Route.of(decision, opened.spec, None))}
        return StreamingResponse(chunks, media_type=SSE_MEDIA_TYPE, headers=headers)
    try:
        result = await complete_with_fallback(
            decision.chain,
            request,
            adapter_for=state.pool.adapter,
            health=state.router.health,
            config=state.turns.fallback,
        )
    except ProviderError as exc:
        _record_failures(state, getattr(exc, "attempts", ()))
        raise
    _record_failures(state, result.attempts)
    spec, completion = result.spec, result.completion
    state.metrics.record_model_call(
        provider=spec.provider,
        model=spec.name,
        seconds=time.time() - now,
        input_tokens=completion.usage.prompt_tokens,
        output_tokens=completion.usage.completion_tokens,
    )
    _charge(state, who, spec, completion.usage)
    payload = completion_payload(completion_id, created, spec, completion)
    if state.route_feedback is not None:  # the outcome record that feedback can rate later
        await state.route_feedback.record(
            who.tenant,
            completion_id,
            decision,
            spec,
            prompt_tokens=completion.usage.prompt_tokens,
            completion_tokens=completion.usage.completion_tokens,
            cost_usd=float(cost.cost_usd(spec, completion.usage)),
            messages=messages,
            answer=completion.content,
        )
    payload["soma_route"] = {
        "model": spec.name,
        "reason": decision.reason,
        "estimated_cost_usd": decision.estimated_cost_usd,
        "attempts": [a.describe() for a in result.attempts],
    }
    headers = route_headers(Route.of(decision, spec, cost.cost_usd(spec, completion.usage)))
    return json_response(payload, headers)


async def _open_stream(
    state: GatewayState, chain: Sequence[ModelSpec], request: ChatRequest
) -> FallbackStream:
    """The chain's stream, once its first token is in; every failed try is counted."""
    try:
        opened = await stream_with_fallback(
            chain,
            request,
            adapter_for=state.pool.adapter,
            health=state.router.health,
            config=state.turns.fallback,
        )
    except ProviderError as exc:
        _record_failures(state, getattr(exc, "attempts", ()))
        raise
    _record_failures(state, opened.attempts)
    return opened


def _record_failures(state: GatewayState, attempts: Sequence[Any]) -> None:
    """Count each failed try of a chain as a failed model call (the call that answers is
    counted when its answer is complete), so the metrics agree with what the providers saw."""
    for attempt in attempts:
        if attempt.outcome == "failed":
            state.metrics.record_model_call(
                provider=attempt.provider,
                model=attempt.model,
                seconds=attempt.latency_ms / 1000,
                error_type=attempt.error_type or "error",
            )


router.add_api_route(
    "/chat/completions",
    chat_completions,
    methods=["POST"],
    response_model=None,
    route_class_override=LeanJSONRoute,
)


async def _stream(
    state: GatewayState,
    who: Principal,
    spec: ModelSpec,
    request: ChatRequest,
    completion_id: str,
    created: int,
    include_usage: bool,
    *,
    opened: FallbackStream | None = None,
    decision: RoutingDecision | None = None,
) -> AsyncIterator[bytes]:
    """The answer as OpenAI's chunks; a routed one (``decision``) that completes leaves its
    outcome record before the finishing chunk, so its id can be rated once ``[DONE]`` is in."""

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": spec.name,
            "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            ],
        }

    started = time.perf_counter()
    usage: Usage | None = None
    finish_reason = "stop"
    parts: list[str] = []
    yield sse_data(chunk({"role": "assistant", "content": ""}))
    try:
        pieces = opened if opened is not None else (await state.pool.adapter(spec)).stream(request)
        async for piece in pieces:
            if piece.delta:
                parts.append(piece.delta)
                yield sse_data(chunk({"content": piece.delta}))
            if piece.usage is not None:
                usage = piece.usage
            if piece.finish_reason is not None:
                finish_reason = piece.finish_reason
    except (ProviderError, APIError) as exc:
        state.metrics.record_model_call(
            provider=spec.provider,
            model=spec.name,
            seconds=time.perf_counter() - started,
            error_type=type(exc).__name__,
        )
        problem = problem_body(to_api_error(exc), None)
        # OpenAI's clients raise on an ``error`` object in the stream; no [DONE] follows,
        # so the stream cannot pass for a complete answer.
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
    if usage is None:
        prompt = tokens.count_messages(request.messages, spec)
        completion_tokens = tokens.count_text("".join(parts), spec)
        usage = Usage(
            prompt_tokens=prompt,
            completion_tokens=completion_tokens,
            total_tokens=prompt + completion_tokens,
        )
    state.metrics.record_model_call(
        provider=spec.provider,
        model=spec.name,
        seconds=time.perf_counter() - started,
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
    )
    _charge(state, who, spec, usage)
    if decision is not None and state.route_feedback is not None:
        await state.route_feedback.record(
            who.tenant,
            completion_id,
            decision,
            spec,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=float(cost.cost_usd(spec, usage)),
            messages=request.messages,
            answer="".join(parts),
        )
    yield sse_data(chunk({}, finish_reason))
    if include_usage:
        final = chunk({})
        final["choices"] = []
        final["usage"] = usage_json(usage)
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
