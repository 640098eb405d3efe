"""Grounded chat: answer a conversation message from a collection, with its sources.

:func:`ground` retrieves context for the user's message and renders the ``rag_context``
prompt around it (the tenant's own version when a prompt service is given); the chat turn sends
that prompt in place of the user's message (the stored message stays as the user wrote it) and
the reply carries the sources.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from somaagent.llm import tokens
from somaagent.llm.specs import ModelSpec
from somaagent.memory.service import MemoryService
from somaagent.prompts.service import PromptService
from somaagent.types.memory import ContextSource, RAGContext, RetrieveRequest

__all__ = ["Grounding", "ground"]


@dataclass(frozen=True, slots=True)
class Grounding:
    """What grounding a chat turn in a collection gives: the prompt to send in place of the
    user's message, the sources it cites, and the retrieved context."""

    prompt: str
    sources: list[ContextSource]
    context: RAGContext


async def ground(
    memory: MemoryService,
    tenant: str,
    collection: str,
    query: str,
    *,
    spec: ModelSpec | None = None,
    token_budget: int = 2000,
    k: int = 5,
    filter: Mapping[str, Any] | None = None,
    prompts: PromptService | None = None,
) -> Grounding:
    """Ground a chat turn: retrieve context for ``query`` and build the prompt to send.

    Args:
        memory: the memory service.
        tenant: whose collection.
        collection: the collection's name (404 if the tenant has none by that name).
        query: the user's message.
        spec: the chat model, whose tokenizer counts the budget (cl100k when ``None``).
        token_budget: the most tokens of context.
        k: the most chunks.
        filter: a metadata filter on the chunks.
        prompts: render the tenant's own ``rag_context`` (its latest version, else the
            shipped default) through this service; the shipped default when ``None``.

    Returns:
        The prompt to send in place of the user's message, its sources and context.
    """
    # Retrieval reads at most the first 10,000 characters of a long message; the prompt keeps
    # all of it.
    body = RetrieveRequest(
        query=query[:10_000],
        k=k,
        token_budget=max(16, token_budget),
        filter=dict(filter) if filter else None,
    )
    counter = (lambda text: tokens.count_text(text, spec)) if spec is not None else None
    context = await memory.retrieve(tenant, collection, body, count_tokens=counter)
    if prompts is None:
        prompt = memory.pipeline.augment_prompt(query, context)
    else:
        variables = {
            "question": query,
            "context": context.context,
            "sources": [s.label for s in context.sources],
        }
        prompt = (await prompts.render(tenant, "rag_context", variables)).content
    return Grounding(prompt=prompt, sources=list(context.sources), context=context)
