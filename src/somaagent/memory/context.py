"""Turning search hits into prompt context within a token budget, and into a prompt.

The context numbers the documents it cites, ``[1]``, ``[2]``, ... in order of first appearance,
and heads each passage with its number, source and heading path::

    [1] guide/install.md › Install
    Run pip install somaagent ...

    [2] faq.md
    ...

Passages go in best first until the next one would pass the budget; if even the best one is
over the budget alone, it is cut (at a word boundary) to fit. Either way ``truncated`` says so.
:func:`augment_prompt` renders the prompt engine's ``rag_context`` template with the context,
the question and the numbered sources.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from somaagent.memory.hybrid import FusedHit
from somaagent.memory.schemas import ContextChunk, ContextSource, RAGContext, SearchHitPublic

if TYPE_CHECKING:  # Jinja2 is imported only when a prompt is rendered
    from somaagent.prompts.engine import CompiledTemplate, PromptEngine

__all__ = ["augment_prompt", "build_context", "hit_public"]

logger = logging.getLogger(__name__)

TokenCounter = Callable[[str], int]
SEPARATOR = "\n\n"
_RAG_TEMPLATE = "rag_context"


def hit_public(hit: FusedHit) -> SearchHitPublic:
    """A fused hit as the API shows it (chunk fields read from the stored metadata)."""
    meta = dict(hit.metadata)
    document_id = str(meta.pop("document_id", hit.id.rsplit("#", 1)[0]))
    chunk_index = meta.pop("chunk_index", 0)
    source = meta.pop("source", None)
    headings = meta.pop("headings", "")
    char_start = meta.pop("char_start", None)
    char_end = meta.pop("char_end", None)
    user_meta = {k: v for k, v in meta.items() if isinstance(v, str | int | float | bool)}
    return SearchHitPublic(
        id=hit.id,
        document_id=document_id,
        chunk_index=chunk_index if isinstance(chunk_index, int) else 0,
        text=hit.document,
        score=hit.score,
        source=source if isinstance(source, str) else None,
        headings=[h for h in str(headings).split(" > ") if h],
        char_start=char_start if isinstance(char_start, int) else None,
        char_end=char_end if isinstance(char_end, int) else None,
        metadata=user_meta,
        vector_score=hit.vector_score,
        keyword_score=hit.keyword_score,
    )


def _header(number: int, hit: SearchHitPublic) -> str:
    label = hit.source or hit.document_id
    if hit.headings:
        label += " › " + " › ".join(hit.headings)
    return f"[{number}] {label}"


def _cut(text: str, room: int, count: TokenCounter) -> str:
    """The longest word-boundary prefix of ``text`` within ``room`` tokens (binary search)."""
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if count(text[:middle]) <= room:
            low = middle
        else:
            high = middle - 1
    prefix = text[:low]
    if low < len(text) and " " in prefix:
        prefix = prefix[: prefix.rindex(" ")]
    return prefix.rstrip()


def build_context(
    query: str,
    collection: str,
    hits: Sequence[FusedHit],
    *,
    token_budget: int,
    count_tokens: TokenCounter,
) -> RAGContext:
    """Format ``hits`` (best first) as context of at most ``token_budget`` tokens.

    Args:
        query: the question the hits answer.
        collection: the collection they come from.
        hits: search results, best first.
        token_budget: the most tokens the context may have.
        count_tokens: the counter of the model the context is for.
    """
    numbers: dict[str, int] = {}
    sources: list[ContextSource] = []
    chunks: list[ContextChunk] = []
    blocks: list[str] = []
    used = 0
    truncated = False
    for hit in hits:
        public = hit_public(hit)
        number = numbers.get(public.document_id, len(numbers) + 1)
        header = _header(number, public)
        block = header + "\n" + public.text
        cost = count_tokens(block) + (count_tokens(SEPARATOR) if blocks else 0)
        if used + cost > token_budget:
            truncated = True
            if blocks:
                break
            room = token_budget - count_tokens(header + "\n")
            text = _cut(public.text, room, count_tokens) if room > 0 else ""
            if not text:
                break
            public = public.model_copy(update={"text": text})
            block, cost = header + "\n" + text, count_tokens(header + "\n" + text)
        if public.document_id not in numbers:
            numbers[public.document_id] = number
            sources.append(
                ContextSource(number=number, document_id=public.document_id, source=public.source)
            )
        chunks.append(ContextChunk(**public.model_dump(), source_number=number))
        blocks.append(block)
        used += cost
        if used >= token_budget:
            break
    context = SEPARATOR.join(blocks)
    token_count = count_tokens(context) if context else 0
    # Counting the whole can differ from summing the parts by a token at a seam: drop the
    # last passages until the whole fits.
    while token_count > token_budget and len(blocks) > 1:
        blocks.pop()
        dropped = chunks.pop()
        truncated = True
        if all(c.document_id != dropped.document_id for c in chunks):
            sources = [s for s in sources if s.document_id != dropped.document_id]
        context = SEPARATOR.join(blocks)
        token_count = count_tokens(context)
    if len(chunks) < len(hits):
        truncated = True
    return RAGContext(
        query=query,
        collection=collection,
        chunks=chunks,
        sources=sources,
        context=context,
        token_count=token_count,
        token_budget=token_budget,
        truncated=truncated,
    )


def _fallback_prompt(query: str, context: RAGContext) -> str:
    sources = "\n".join(f"[{s.number}] {s.label}" for s in context.sources)
    parts = [
        "Answer the question using only the context below. If the context does not contain "
        "the answer, say that you do not know.",
        f'Context:\n"""\n{context.context}\n"""',
    ]
    if sources:
        parts.append("Sources:\n" + sources)
    parts.append(f"Question: {query}")
    return "\n\n".join(parts)


def augment_prompt(query: str, context: RAGContext) -> str:
    """The user prompt that asks ``query`` over ``context``.

    Rendered through the prompt engine's shipped ``rag_context`` template (question, context,
    sources); when the prompt engine is not available (no Jinja2), an equivalent built-in text.
    A tenant's own version of ``rag_context`` is used by the gateway, which renders through its
    :class:`~somaagent.prompts.service.PromptService` instead.
    """
    variables = {
        "question": query,
        "context": context.context,
        "sources": [s.label for s in context.sources],
    }
    try:
        engine, compiled = _rag_template()
    except (ImportError, LookupError) as exc:
        logger.debug("rag_context template unavailable (%s); using the built-in prompt", exc)
        return _fallback_prompt(query, context)
    return engine.render(compiled, variables)


def _rag_template() -> tuple[PromptEngine, CompiledTemplate]:
    from somaagent.prompts.defaults import load_defaults
    from somaagent.prompts.engine import PromptEngine

    global _CACHED
    if _CACHED is None:
        spec = load_defaults().get(_RAG_TEMPLATE)
        if spec is None:
            raise LookupError(f"no {_RAG_TEMPLATE!r} default template")
        engine = PromptEngine()
        _CACHED = (engine, engine.compile(spec))
    return _CACHED


_CACHED: tuple[PromptEngine, CompiledTemplate] | None = None
