"""Conversations and their messages: storage scoped by tenant, with cursor pagination.

Every query filters on the caller's tenant, so another tenant's conversation is simply not
found (404), never "forbidden". The chat turn (:class:`~somaagent.chat.turns.ChatTurns`) reads
and writes through the public methods here: :meth:`ConversationService.load`,
:meth:`~ConversationService.history` and :meth:`~ConversationService.append`, each inside a
session the caller opens from :attr:`~ConversationService.sessions`, so one turn's reads and
writes commit together.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, Protocol, TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from somaagent import types
from somaagent.accounts.keys import Principal
from somaagent.chat.tables import Conversation, Message
from somaagent.db import decode_cursor, encode_cursor, new_id, utcnow
from somaagent.errors import NotFoundError, SomaAgentError
from somaagent.llm.specs import ModelSpec
from somaagent.memory.service import MemoryService
from somaagent.prompts.service import PromptService

__all__ = [
    "ConversationService",
    "ModelResolver",
    "conversation_public",
    "message_public",
    "retry_on_seq_race",
]

log = logging.getLogger("somaagent.chat")

P = ParamSpec("P")
R = TypeVar("R")


class ModelResolver(Protocol):
    """Resolves a model name to its registry spec (a 422 naming the field when it cannot)."""

    def resolve(self, name: str | None, *, field: str = "model") -> ModelSpec: ...


def conversation_public(row: Conversation, *, last_model: str | None = None) -> types.Conversation:
    """A conversation row as the API shows it (``last_model``: the model of its latest reply)."""
    return types.Conversation(
        id=row.id,
        title=row.title,
        system_prompt=row.system_prompt,
        model=row.model,
        last_model=last_model,
        metadata=row.metadata_,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def message_public(row: Message) -> types.Message:
    """A message row as the API shows it (usage, route and sources from the stored reply)."""
    usage = None
    if row.prompt_tokens is not None or row.completion_tokens is not None:
        p, c = row.prompt_tokens or 0, row.completion_tokens or 0
        usage = types.Usage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c)
    return types.Message(
        id=row.id,
        conversation_id=row.conversation_id,
        role=row.role,
        content=row.content,
        model=row.model,
        provider=row.provider,
        usage=usage,
        cost_usd=row.cost_usd,
        latency_ms=row.latency_ms,
        route=(row.extra or {}).get("route"),
        sources=(row.extra or {}).get("sources"),
        created_at=row.created_at,
    )


async def _last_models(session: AsyncSession, conv_ids: list[str]) -> dict[str, str | None]:
    """The model of each conversation's latest reply, in one query for a page."""
    if not conv_ids:
        return {}
    latest = (
        select(Message.conversation_id, func.max(Message.seq).label("seq"))
        .where(Message.conversation_id.in_(conv_ids), Message.role == "assistant")
        .group_by(Message.conversation_id)
        .subquery()
    )
    rows = await session.execute(
        select(Message.conversation_id, Message.model).join(
            latest,
            (Message.conversation_id == latest.c.conversation_id) & (Message.seq == latest.c.seq),
        )
    )
    return {conv_id: model for conv_id, model in rows.all()}


class ConversationService:
    """Conversation storage (the chat turn itself is :class:`~somaagent.chat.turns.ChatTurns`).

    Args:
        sessions: the session factory.
        models: resolves a conversation's model name (checked when it is created).
        prompts: renders a conversation's system prompt from a saved template.
        memory_of: the memory service, looked up on use (so the app can swap it).
        max_history: the most earlier messages a turn reads.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        models: ModelResolver,
        prompts: PromptService,
        memory_of: Callable[[], MemoryService],
        *,
        max_history: int,
    ) -> None:
        self.sessions = sessions
        self.models = models
        self.prompts = prompts
        self._memory_of = memory_of
        self.max_history = max_history

    @property
    def memory(self) -> MemoryService:
        """The memory service (looked up on use, so it can be swapped)."""
        return self._memory_of()

    # -- conversations -------------------------------------------------------------------

    async def create(self, who: Principal, body: types.ConversationCreate) -> types.Conversation:
        """Create a conversation (its system prompt rendered from a template if asked)."""
        if body.model is not None and body.model != "auto":
            self.models.resolve(body.model)
        system_prompt = body.system_prompt
        metadata = dict(body.metadata)
        if body.prompt is not None:
            rendered = await self.prompts.render(
                who.tenant,
                body.prompt.name,
                body.prompt.variables,
                loc=("body", "prompt", "variables"),
                ref_loc=("body", "prompt", "name"),
            )
            system_prompt = rendered.content
            metadata["prompt"] = {"name": rendered.name, "version": rendered.version}
        now = utcnow()
        row = Conversation(
            id=new_id("conv"),
            tenant_id=who.tenant,
            title=body.title,
            system_prompt=system_prompt,
            model=body.model,
            metadata_=metadata,
            created_at=now,
            updated_at=now,
        )
        async with self.sessions() as session:
            session.add(row)
            await session.commit()
        return conversation_public(row)

    async def load(self, session: AsyncSession, who: Principal, conv_id: str) -> Conversation:
        """The caller's conversation row in ``session``; 404 for an unknown or another
        tenant's."""
        row = await session.scalar(
            select(Conversation).where(
                Conversation.id == conv_id, Conversation.tenant_id == who.tenant
            )
        )
        if row is None:
            raise NotFoundError(f"conversation {conv_id!r} not found")
        return row

    async def get(self, who: Principal, conv_id: str) -> types.Conversation:
        """One conversation."""
        async with self.sessions() as session:
            row = await self.load(session, who, conv_id)
            last = await _last_models(session, [row.id])
        return conversation_public(row, last_model=last.get(row.id))

    async def list_page(
        self, who: Principal, *, limit: int, cursor: str | None
    ) -> types.Page[types.Conversation]:
        """One page of the caller's conversations, newest first."""
        query = select(Conversation).where(Conversation.tenant_id == who.tenant)
        if cursor is not None:
            query = query.where(Conversation.id < decode_cursor(cursor, str))
        query = query.order_by(Conversation.id.desc()).limit(limit + 1)
        async with self.sessions() as session:
            rows = list((await session.scalars(query)).all())
            has_more = len(rows) > limit
            rows = rows[:limit]
            last = await _last_models(session, [r.id for r in rows])
        return types.Page[types.Conversation](
            data=[conversation_public(r, last_model=last.get(r.id)) for r in rows],
            has_more=has_more,
            next_cursor=encode_cursor(rows[-1].id) if has_more else None,
        )

    async def delete(self, who: Principal, conv_id: str) -> None:
        """Delete a conversation, its messages and their search index."""
        async with self.sessions() as session:
            row = await self.load(session, who, conv_id)
            await session.execute(delete(Message).where(Message.conversation_id == row.id))
            await session.delete(row)
            await session.commit()
        try:
            await self.memory.forget_conversation(who.tenant, conv_id)
        except SomaAgentError:  # a vector store that is down must not block the delete
            log.warning("could not drop the message index of %s", conv_id, exc_info=True)

    async def messages(
        self, who: Principal, conv_id: str, *, limit: int, cursor: str | None
    ) -> types.Page[types.Message]:
        """One page of a conversation's messages, oldest first."""
        async with self.sessions() as session:
            await self.load(session, who, conv_id)
            query = select(Message).where(
                Message.conversation_id == conv_id, Message.tenant_id == who.tenant
            )
            if cursor is not None:
                query = query.where(Message.seq > decode_cursor(cursor, int))
            rows = list((await session.scalars(query.order_by(Message.seq).limit(limit + 1))).all())
        has_more = len(rows) > limit
        rows = rows[:limit]
        return types.Page[types.Message](
            data=[message_public(r) for r in rows],
            has_more=has_more,
            next_cursor=encode_cursor(rows[-1].seq) if has_more else None,
        )

    # -- within a turn's session -------------------------------------------------------------

    async def append(
        self,
        session: AsyncSession,
        who: Principal,
        conversation: Conversation,
        *,
        role: str,
        content: str,
        **fields: Any,
    ) -> Message:
        """Add a message after the conversation's last (flushed, not committed).

        Writers of one conversation take turns: the conversation's ``updated_at`` is written
        first, which locks its row on PostgreSQL and takes SQLite's write lock until the
        caller commits, so the ``seq`` read after it cannot race another writer's. (Read
        first, two writers took the same ``seq``; with 50 concurrent sends the retries ran
        out.) :func:`retry_on_seq_race` stays as the net for writers in other processes of
        a database that does not lock rows.
        """
        now = utcnow()
        conversation.updated_at = now
        await session.flush()
        last = await session.scalar(
            select(func.max(Message.seq)).where(Message.conversation_id == conversation.id)
        )
        row = Message(
            id=new_id("msg"),
            tenant_id=who.tenant,
            conversation_id=conversation.id,
            seq=(last or 0) + 1,
            role=role,
            content=content,
            api_key_id=who.key_id,
            created_at=now,
            **fields,
        )
        session.add(row)
        await session.flush()
        return row

    async def history(self, session: AsyncSession, conversation: Conversation) -> list[Message]:
        """The conversation's last ``max_history`` messages, oldest first."""
        rows = await session.scalars(
            select(Message)
            .where(Message.conversation_id == conversation.id)
            .order_by(Message.seq.desc())
            .limit(self.max_history)
        )
        return list(reversed(rows.all()))


async def retry_on_seq_race(fn: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``fn`` again when two writers took the same message ``seq`` at once."""
    for attempt in range(5):
        try:
            return await fn(*args, **kwargs)
        except IntegrityError:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")
