"""Chains: several templates rendered into one chat message list with shared variables.

A chain is an ordered list of references (``default_assistant``, ``rag_context:production``,
...). The variables are shared: each template takes the ones it declares, and a variable no
template declares is an error, as is one a template needs and nobody gave. Each message carries
its token count, and the list its total with chat-format overhead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from somaagent.errors import ValidationError
from somaagent.llm import tokens
from somaagent.llm.base import ChatMessage
from somaagent.llm.registry import ModelSpec
from somaagent.prompts.engine import CompiledTemplate, PromptEngine
from somaagent.prompts.schemas import PromptVersion, RenderedChain, RenderedPrompt

if TYPE_CHECKING:
    from somaagent.prompts.store import PromptStore

__all__ = ["render_chain", "to_chat_messages"]

_LOC = ("body", "variables")


def to_chat_messages(chain: RenderedChain | Sequence[RenderedPrompt]) -> list[ChatMessage]:
    """The rendered messages as the ``ChatMessage`` list a model adapter takes."""
    messages = chain.messages if isinstance(chain, RenderedChain) else chain
    return [ChatMessage(role=m.role, content=m.content) for m in messages]


def _split(
    compiled: Sequence[CompiledTemplate], variables: Mapping[str, Any], engine: PromptEngine
) -> list[dict[str, Any]]:
    """Each template's share of the variables; every problem of every template at once."""
    declared = {v.name for c in compiled for v in c.spec.variables}
    errors: list[dict[str, Any]] = [
        {
            "loc": [*_LOC, name],
            "msg": f"{name!r} is not a variable of any template in the chain "
            f"(they declare: {', '.join(sorted(declared)) or 'none'})",
            "type": "undeclared_variable",
        }
        for name in variables
        if name not in declared
    ]
    shares: list[dict[str, Any]] = []
    for item in compiled:
        own = {v.name for v in item.spec.variables}
        share = {k: v for k, v in variables.items() if k in own}
        try:
            engine.bind(item.spec, share, loc=_LOC)
        except ValidationError as exc:
            errors += [e for e in exc.errors if e not in errors]
        shares.append(share)
    if errors:
        detail = "; ".join(str(e["msg"]) for e in errors)
        raise ValidationError(f"invalid variables for the chain: {detail}", errors=errors)
    return shares


async def render_chain(
    store: PromptStore,
    engine: PromptEngine,
    tenant: str,
    refs: Sequence[str],
    variables: Mapping[str, Any] | None = None,
    *,
    model: ModelSpec | None = None,
) -> RenderedChain:
    """Render ``refs`` in order with shared ``variables``.

    Args:
        store: where the templates are.
        engine: compiles and renders them.
        tenant: whose templates.
        refs: ``name``, ``name@version`` or ``name:label`` each.
        variables: shared by all the templates.
        model: count tokens as this model would; no counts when ``None``.

    Raises:
        NotFoundError: a template, version or label does not exist.
        ValidationError: bad variables, or a template failed to render.
    """
    versions: list[PromptVersion] = [await store.get(tenant, ref) for ref in refs]
    compiled = [engine.compile(v.to_spec()) for v in versions]
    shares = _split(compiled, variables or {}, engine)

    def work() -> RenderedChain:
        messages: list[RenderedPrompt] = []
        for version, item, share in zip(versions, compiled, shares, strict=True):
            content = engine.render(item, share, loc=_LOC)
            messages.append(
                RenderedPrompt(
                    name=version.name,
                    version=version.version,
                    role=version.role,
                    content=content,
                    tokens=tokens.count_text(content, model) if model is not None else None,
                    model=model.name if model is not None else None,
                    source=version.source,
                )
            )
        total = None
        if model is not None:
            total = tokens.count_messages(to_chat_messages(messages), model)
        return RenderedChain(
            messages=messages,
            total_tokens=total,
            model=model.name if model is not None else None,
        )

    return await anyio.to_thread.run_sync(work)
