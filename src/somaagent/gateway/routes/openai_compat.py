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

import itertools
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException

from somaagent.accounts.keys import Principal
from somaagent.chat.events import Route
from somaagent.errors import APIError, ProviderError, ValidationError
from somaagent.gateway.auth import (
    CurrentPrincipal,
    State,
    current_state,
    require_principal,
)
from somaagent.gateway.headers import cost_header, route_headers
from somaagent.gateway.problems import problem_body, to_api_error
from somaagent.gateway.state import GatewayState
from somaagent.gateway.streaming import SSE_HEADERS, SSE_MEDIA_TYPE, sse_data
from somaagent.llm import cost, tokens
from somaagent.llm.base import ChatMessage, ChatRequest, Completion
from somaagent.llm.fallback import FallbackStream, complete_with_fallback, stream_with_fallback
from somaagent.llm.registry import ModelSpec
from somaagent.types import MAX_MESSAGE_CHARS, PromptInvocation, Usage

log = logging.getLogger("somaagent.gateway")

router = APIRouter(prefix="/v1", tags=["openai"])


class _ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[_ContentPart] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat-completions body; unknown fields are an error naming them."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(max_length=200)
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=1000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=32_768)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=32_768)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: Annotated[int, Field(ge=1, le=1)] = 1
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    user: str | None = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    tools: Annotated[list[dict[str, Any]], Field(max_length=0)] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    # SomaAgent's extension: a stored template rendered in front of the messages.
    prompt: PromptInvocation | None = None
    # SomaAgent's extension: a routing policy for the router (with model "auto").
    policy: dict[str, Any] | None = None


def _to_chat_messages(messages: list[OpenAIMessage]) -> list[ChatMessage]:
    result: list[ChatMessage] = []
    for index, message in enumerate(messages):
        content = message.content
        if isinstance(content, list):
            texts: list[str] = []
            for part_index, part in enumerate(content):
                if part.type != "text" or part.text is None:
                    raise ValidationError(
                        f"content part type {part.type!r} is not supported; send text",
                        errors=[_loc("messages", index, "content", part_index, "type")],
                    )
                texts.append(part.text)
            text = "".join(texts)
        else:
            text = content or ""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(
                f"message {index} is not valid Unicode text (a lone surrogate)",
                errors=[_loc("messages", index, "content")],
            ) from None
        if len(text) > MAX_MESSAGE_CHARS:
            raise ValidationError(
                f"message {index} is longer than {MAX_MESSAGE_CHARS} characters",
                errors=[_loc("messages", index, "content")],
            )
        role = "system" if message.role == "developer" else message.role
        result.append({"role": role, "content": text})
    return result


def _loc(*loc: str | int) -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": "invalid", "type": "value_error"}


def _usage_json(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def _soma_headers(spec: ModelSpec, usage: Usage | None) -> dict[str, str]:
    headers = {"x-soma-model": spec.name}
    if usage is not None:
        headers.update(cost_header(cost.cost_usd(spec, usage)))
    return headers


# Completion ids need to be unique, not secret: new_id's shape (prefix, 12 hex digits of the
# time in ms, 12 more) with a counter from a random start per process instead of fresh
# randomness per id; a forked worker starts again from its own random point.
_ID_MASK = (1 << 48) - 1
_ID_START = secrets.randbits(48)
_id_counter = itertools.count()


def _restart_ids() -> None:
    global _ID_START, _id_counter
    _ID_START = secrets.randbits(48)
    _id_counter = itertools.count()


os.register_at_fork(after_in_child=_restart_ids)


def _completion_id(now: float) -> str:
    return f"chatcmpl_{int(now * 1000):012x}{(_ID_START + next(_id_counter)) & _ID_MASK:012x}"


def _json_response(payload: dict[str, Any], headers: dict[str, str]) -> Response:
    """What ``JSONResponse(payload, headers=headers)`` sends (the same bytes for these
    payloads: strings, ints, None, lists and dicts), encoded with orjson."""
    return Response(orjson.dumps(payload), media_type="application/json", headers=headers)


_Handler = Callable[[Request], Coroutine[Any, Any, Response]]
# The dependencies the lean path knows how to run: each takes the request and nothing else.
_LEAN_DEPENDENCIES: tuple[Callable[[Request], Coroutine[Any, Any, Any]], ...] = (
    require_principal,
    current_state,
)


class LeanJSONRoute(APIRoute):
    """An :class:`APIRoute` that skips FastAPI's dependency solving on well-formed requests.

    It applies to an endpoint whose parameters are one JSON body model plus any of the
    gateway's request-only dependencies (``CurrentPrincipal``, ``State``), that returns a
    :class:`Response`, and whose route and router declare no other dependencies. Then, for a
    request with ``Content-Type: application/json`` and no dependency overrides on the app,
    the handler reads the body, validates it with the model's ``model_validate_json``
    (pydantic-core's own JSON parser, no intermediate ``dict``), runs the dependencies as plain
    calls in their declared order, and awaits the endpoint.

    Everything else is handed to the handler FastAPI built for the route, on the body already
    read: another content type, a body that does not parse or validate, a failure reading it.
    So the errors, their order (a malformed JSON body is refused before authentication,
    invalid fields after it) and their problem+json bodies are FastAPI's, word for word, and
    only valid requests take the short path. An endpoint of another shape is served by
    FastAPI's handler alone. (Dependencies added with ``app.include_router(...,
    dependencies=...)`` are not visible to the route: include this router without them.)
    """

    def get_route_handler(self) -> _Handler:
        """The lean handler, falling back to FastAPI's; see the class docstring."""
        standard = super().get_route_handler()
        plan = _lean_plan(self)
        if plan is None:
            log.debug("route %s %s takes FastAPI's path: unsupported shape", self.methods, self)
            return standard
        body_name, model, dependencies = plan
        endpoint: Callable[..., Coroutine[Any, Any, Response]] = self.endpoint

        async def handler(request: Request) -> Response:
            if request.app.dependency_overrides or not _is_json(
                request.headers.get("content-type")
            ):
                return await standard(request)
            try:
                raw = await request.body()
            except HTTPException:
                raise  # the body limit's 413, as on FastAPI's path
            except Exception:
                # FastAPI's handler turns a failed read into its 400 (the body is gone, so it
                # fails too, the same way)
                return await standard(request)
            try:
                body = model.model_validate_json(raw)
            except PydanticValidationError:
                return await standard(request)  # its 422, with FastAPI's locations
            values: dict[str, Any] = {body_name: body}
            for name, dependency in dependencies:
                values[name] = await dependency(request)
            return await endpoint(**values)

        return handler


def _lean_plan(
    route: APIRoute,
) -> tuple[str, type[BaseModel], list[tuple[str, Callable[[Request], Any]]]] | None:
    """(body parameter, its model, [(parameter, dependency)]) if the lean path can serve the
    route, else None."""
    dependant = route.dependant
    if (
        dependant.path_params
        or dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or len(dependant.body_params) != 1
        or dependant.request_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
        or route.response_model is not None
    ):
        return None
    body = dependant.body_params[0]
    model = body.field_info.annotation
    if (
        not isinstance(model, type)
        or not issubclass(model, BaseModel)
        or getattr(body.field_info, "embed", False)
    ):
        return None
    dependencies: list[tuple[str, Callable[[Request], Any]]] = []
    for sub in dependant.dependencies:
        if (
            sub.name is None
            or sub.call not in _LEAN_DEPENDENCIES
            or sub.dependencies
            or sub.path_params
            or sub.query_params
            or sub.header_params
            or sub.cookie_params
            or sub.body_params
        ):
            return None  # not a dependency of the request alone
        dependencies.append((sub.name, sub.call))
    return body.name, model, dependencies


def _is_json(content_type: str | None) -> bool:
    """Whether FastAPI would read the body as JSON because it is ``application/json``."""
    if content_type is None:
        return False
    return content_type.partition(";")[0].strip().lower() == "application/json"


async def chat_completions(
    body: ChatCompletionRequest, who: CurrentPrincipal, state: State
) -> Response:
    """Create a chat completion, OpenAI-style (``model: "auto"`` or a ``policy`` routes)."""
    await state.usage.check_budget(who)
    routed = body.model == "auto" or body.policy is not None
    spec = None if routed else state.pool.resolve(body.model)
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    messages = _to_chat_messages(body.messages)
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
    request = ChatRequest(
        messages=messages,
        model=spec.provider_model_id,
        max_tokens=max_tokens,
        temperature=body.temperature,
        stop=stop,
    )
    adapter = await state.pool.adapter(spec)
    now = time.time()
    completion_id = _completion_id(now)
    created = int(now)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = _stream(state, who, spec, request, completion_id, created, include_usage)
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
    return _json_response(
        _completion_payload(completion_id, created, spec, completion),
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


def _completion_payload(
    completion_id: str, created: int, spec: ModelSpec, completion: Completion
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": spec.name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.content},
                "finish_reason": completion.finish_reason or "stop",
                "logprobs": None,
            }
        ],
        "usage": _usage_json(completion.usage),
        "system_fingerprint": None,
    }


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
    completion_id, created = _completion_id(now), int(now)
    if body.stream:
        opened = await stream_with_fallback(
            decision.chain,
            request,
            adapter_for=state.pool.adapter,
            health=state.router.health,
            config=state.turns.fallback,
        )
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = _stream(
            state, who, opened.spec, request, completion_id, created, include_usage, opened=opened
        )
        headers = {**SSE_HEADERS, **route_headers(Route.of(decision, opened.spec, None))}
        return StreamingResponse(chunks, media_type=SSE_MEDIA_TYPE, headers=headers)
    result = await complete_with_fallback(
        decision.chain,
        request,
        adapter_for=state.pool.adapter,
        health=state.router.health,
        config=state.turns.fallback,
    )
    spec, completion = result.spec, result.completion
    state.metrics.record_model_call(
        provider=spec.provider,
        model=spec.name,
        seconds=time.time() - now,
        input_tokens=completion.usage.prompt_tokens,
        output_tokens=completion.usage.completion_tokens,
    )
    _charge(state, who, spec, completion.usage)
    payload = _completion_payload(completion_id, created, spec, completion)
    if state.route_feedback is not None:  # the outcome record that feedback can rate later
        await state.route_feedback.record(
            who.tenant,
            completion_id,
            decision,
            spec,
            prompt_tokens=completion.usage.prompt_tokens,
            completion_tokens=completion.usage.completion_tokens,
            cost_usd=float(cost.cost_usd(spec, completion.usage)),
        )
    payload["soma_route"] = {
        "model": spec.name,
        "reason": decision.reason,
        "estimated_cost_usd": decision.estimated_cost_usd,
        "attempts": [a.describe() for a in result.attempts],
    }
    headers = route_headers(Route.of(decision, spec, cost.cost_usd(spec, completion.usage)))
    return _json_response(payload, headers)


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
) -> AsyncIterator[bytes]:
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
    yield sse_data(chunk({}, finish_reason))
    if include_usage:
        final = chunk({})
        final["choices"] = []
        final["usage"] = _usage_json(usage)
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
