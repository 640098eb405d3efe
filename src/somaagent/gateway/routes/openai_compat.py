"""OpenAI-compatible endpoints: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Existing OpenAI clients work unchanged: the request and response bodies, the stream's
``chat.completion.chunk`` objects and the closing ``data: [DONE]`` follow OpenAI's wire.
Fields OpenAI defines but SomaAgent does not act on (``seed``, ``user``, ...) are accepted
and ignored; ones that would change the answer and are not supported (``n`` > 1, tools,
images) are a 422 naming the field rather than a silently different answer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from somaagent.errors import APIError, ProviderError, ValidationError
from somaagent.gateway.auth import CurrentPrincipal, State
from somaagent.gateway.db.models import new_id
from somaagent.gateway.problems import problem_body, to_api_error
from somaagent.gateway.streaming import SSE_HEADERS, SSE_MEDIA_TYPE, sse_data
from somaagent.llm import cost, tokens
from somaagent.llm.base import ChatMessage, ChatRequest
from somaagent.llm.registry import ModelSpec
from somaagent.types import MAX_MESSAGE_CHARS, PromptInvocation, Usage

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
        headers["x-soma-cost-usd"] = f"{cost.cost_usd(spec, usage):.10f}".rstrip("0").rstrip(".")
    return headers


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest, who: CurrentPrincipal, state: State
) -> JSONResponse | StreamingResponse:
    """Create a chat completion, OpenAI-style."""
    spec = state.pool.resolve(body.model)
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
    request = ChatRequest(
        messages=messages,
        model=spec.provider_model_id,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        stop=stop,
    )
    adapter = await state.pool.adapter(spec)
    completion_id = new_id("chatcmpl")
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = _stream(state, spec, request, completion_id, created, include_usage)
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
    payload = {
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
    return JSONResponse(payload, headers=_soma_headers(spec, completion.usage))


async def _stream(
    state: Any,
    spec: ModelSpec,
    request: ChatRequest,
    completion_id: str,
    created: int,
    include_usage: bool,
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
        adapter = await state.pool.adapter(spec)
        async for piece in adapter.stream(request):
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
