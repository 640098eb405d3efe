"""What the built-in workflow types need from the rest of SomaAgent, as small protocols.

The gateway's app factory hands the engine its services (``ctx.services``): ``memory``, a
callable returning the memory service (tests swap the service on a running gateway), and
``chat``, a :class:`ChatCompleter` (usually :class:`RoutedChat` over the gateway's router,
providers and prompt templates). Workflows import no gateway code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from somaagent.errors import ProviderError, ServerError
from somaagent.llm.base import ChatMessage, ChatRequest
from somaagent.llm.cost import cost_usd
from somaagent.llm.fallback import FallbackConfig, complete_with_fallback
from somaagent.types.memory import Collection, CollectionCreate, DocumentIn, IndexResult

MEMORY = "memory"
CHAT = "chat"
INGEST_ROOT = "ingest_root"
"""The folder ``document_ingest`` may read listed paths under (a ``Path``, or ``None``: off)."""
UPLOADS = "uploads"
"""The :class:`~somaagent.workflows.uploads.UploadStore` of files uploaded for later runs."""


class MemoryIndex(Protocol):
    """The part of the memory service ``document_ingest`` uses (its public API)."""

    async def get_collection(self, tenant: str, name: str) -> Collection: ...

    async def create_collection(self, tenant: str, body: CollectionCreate) -> Collection: ...

    async def index(
        self,
        tenant: str,
        name: str,
        documents: Sequence[DocumentIn],
        *,
        force: bool = False,
        batch_size: int = 32,
    ) -> IndexResult: ...


class ChatCompleter(Protocol):
    """One chat completion for a tenant: ``{"content", "model", "usage", "cost_usd"}``."""

    async def complete(
        self,
        tenant: str,
        messages: list[ChatMessage],
        *,
        model: str | None = None,
        policy: Mapping[str, Any] | None = None,
        template: str | None = None,
        variables: Mapping[str, Any] | None = None,
        max_tokens: int | None = None,
    ) -> dict[str, Any]: ...


def transient(exc: BaseException) -> bool:
    """Whether trying again may help: a 5xx, a retryable provider error, a dropped connection."""
    if isinstance(exc, ProviderError):
        return exc.retryable or bool(getattr(exc, "errors", ()))
    return isinstance(exc, ServerError | OSError | TimeoutError)


class RoutedChat:
    """:class:`ChatCompleter` over the router: the named model, or the router's choice for
    ``auto`` or a policy, down its fallback chain; a prompt template renders first."""

    def __init__(
        self,
        decide: Callable[..., Any],
        adapter_for: Callable[..., Any],
        *,
        health: Any = None,
        fallback: FallbackConfig | None = None,
        prompts: Any = None,
    ) -> None:
        self.decide = decide
        self.adapter_for = adapter_for
        self.health = health
        self.fallback = fallback
        self.prompts = prompts

    async def complete(
        self,
        tenant: str,
        messages: list[ChatMessage],
        *,
        model: str | None = None,
        policy: Mapping[str, Any] | None = None,
        template: str | None = None,
        variables: Mapping[str, Any] | None = None,
        max_tokens: int | None = None,
    ) -> dict[str, Any]:
        if template is not None and self.prompts is not None:
            rendered = await self.prompts.render_messages(tenant, [template], variables or {})
            messages = [*rendered, *messages]
        decision = self.decide(
            model, dict(policy) if policy else None, messages, max_tokens=max_tokens, stream=False
        )
        request = ChatRequest(
            messages=messages, model=decision.spec.provider_model_id, max_tokens=max_tokens
        )
        result = await complete_with_fallback(
            decision.chain,
            request,
            adapter_for=self.adapter_for,
            health=self.health,
            config=self.fallback,
        )
        usage = result.completion.usage
        return {
            "content": result.completion.content,
            "model": result.spec.name,
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            },
            "cost_usd": cost_usd(result.spec, usage),
        }
