"""OpenAI's chat-completions wire: the request body, and the answer, chunk and usage objects the
gateway sends back (the handlers are in :mod:`.openai_compat`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from somaagent.db.ids import CountingIds
from somaagent.errors import ValidationError
from somaagent.llm.base import ChatMessage, Completion
from somaagent.llm.registry import ModelSpec
from somaagent.types import MAX_MESSAGE_CHARS, PromptInvocation, Usage


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


def to_chat_messages(messages: list[OpenAIMessage]) -> list[ChatMessage]:
    """The request's messages as the models take them (a 422 naming the part at fault)."""
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


def usage_json(usage: Usage) -> dict[str, int]:
    """OpenAI's ``usage`` object."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


# Completion ids need to be unique, not secret: new_id's shape (prefix, 12 hex digits of the
# time in ms, 12 more) from a counter rather than fresh randomness per id.
_completion_ids = CountingIds(48)


def completion_id(now: float) -> str:
    """A ``chatcmpl_...`` id, unique in the process."""
    return f"chatcmpl_{int(now * 1000):012x}{_completion_ids.next():012x}"


def completion_payload(
    completion_id: str, created: int, spec: ModelSpec, completion: Completion
) -> dict[str, Any]:
    """The ``chat.completion`` object of a whole answer."""
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
        "usage": usage_json(completion.usage),
        "system_fingerprint": None,
    }
