"""The Model contract every provider adapter implements.

A :class:`Model` turns a :class:`ChatRequest` into either one :class:`Completion`
(:meth:`Model.complete`) or an async iterator of :class:`StreamChunk` (:meth:`Model.stream`).

Contract:

* Failures raise a :class:`somaagent.errors.ProviderError` subclass, never a foreign
  exception: each adapter maps its transport's and vendor's errors at the boundary.
* A stream that ends before the provider said it was finished raises
  :class:`~somaagent.errors.ProviderResponseError`; it never ends quietly as a shorter success.
* The last chunk of a successful stream has ``finish_reason`` set and carries ``usage``
  when the provider reports it.
* Every call has a timeout; a stalled provider raises
  :class:`~somaagent.errors.ProviderTimeoutError`.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, TypedDict

from somaagent.types import Usage


class ChatMessage(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What to ask a model. ``model`` is the provider's own model id."""

    messages: list[ChatMessage]
    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    stop: list[str] | None = None
    timeout: float | None = None


@dataclass(slots=True)
class Completion:
    """A whole answer."""

    content: str
    model: str
    provider: str
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = "stop"


@dataclass(slots=True)
class StreamChunk:
    """A piece of a streamed answer; the last one has ``finish_reason`` and maybe ``usage``."""

    delta: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


class Model(abc.ABC):
    """A chat model behind some provider.

    Attributes:
        provider: the provider id, e.g. ``openai``, ``anthropic``, ``local``.
    """

    provider: str

    @abc.abstractmethod
    async def complete(self, request: ChatRequest) -> Completion:
        """Return the whole answer, or raise a ``ProviderError``."""

    @abc.abstractmethod
    def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """Yield the answer as it is generated, or raise a ``ProviderError``."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release what the model holds (connections, threads)."""
