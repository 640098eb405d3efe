"""Conversations and messages: storage scoped by tenant and cursor pagination. The chat
turn itself (routing, the model call, storing the reply) lives in :mod:`.turns`.

Every query filters on the caller's tenant, so another tenant's conversation is simply
not found (404), never "forbidden".
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from somaagent import types
from somaagent.accounts.keys import Principal
from somaagent.chat import tables as db
from somaagent.db import new_id, utcnow
from somaagent.db.pagination import decode_cursor, encode_cursor
from somaagent.errors import NotFoundError, SomaAgentError
from somaagent.gateway.memory import MemoryService
from somaagent.gateway.providers import ProviderPool
from somaagent.prompts.service import PromptService

log = logging.getLogger("somaagent.gateway")

P = ParamSpec("P")
R = TypeVar("R")

STALE_IN_FLIGHT = timedelta(minutes=10)
_FAILED = 0  # idempotency record: the user message is stored, the model call failed


def conversation_public(row: db.Conversation) -> types.Conversation:
    return types.Conversation(
        id=row.id,
        title=row.title,
        system_prompt=row.system_prompt,
        model=row.model,
        metadata=row.metadata_,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def message_public(row: db.Message) -> types.Message:
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


class ConversationService:
    """Conversation storage for one gateway (the chat turn is :class:`.turns.ChatTurns`)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        pool: ProviderPool,
        prompts: PromptService,
        memory_of: Callable[[], MemoryService],
        *,
        max_history: int,
    ) -> None:
        self.sessions = sessions
        self.pool = pool
        self.prompts = prompts
        self._memory_of = memory_of
        self.max_history = max_history

    @property
    def memory(self) -> MemoryService:
        """The gateway's memory service (looked up on use, so it can be swapped)."""
        return self._memory_of()

    # -- conversations -------------------------------------------------------------------

    async def create(self, who: Principal, body: types.ConversationCreate) -> types.Conversation:
        if body.model is not None and body.model != "auto":
            self.pool.resolve(body.model)
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
        row = db.Conversation(
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

    async def _get_row(
        self, session: AsyncSession, who: Principal, conv_id: str
    ) -> db.Conversation:
        row = await session.scalar(
            select(db.Conversation).where(
                db.Conversation.id == conv_id, db.Conversation.tenant_id == who.tenant
            )
        )
        if row is None:
            raise NotFoundError(f"conversation {conv_id!r} not found")
        return row

    async def get(self, who: Principal, conv_id: str) -> types.Conversation:
        async with self.sessions() as session:
            return conversation_public(await self._get_row(session, who, conv_id))

    async def list_page(
        self, who: Principal, *, limit: int, cursor: str | None
    ) -> types.Page[types.Conversation]:
        query = select(db.Conversation).where(db.Conversation.tenant_id == who.tenant)
        if cursor is not None:
            query = query.where(db.Conversation.id < decode_cursor(cursor, str))
        query = query.order_by(db.Conversation.id.desc()).limit(limit + 1)
        async with self.sessions() as session:
            rows = list((await session.scalars(query)).all())
        has_more = len(rows) > limit
        rows = rows[:limit]
        return types.Page[types.Conversation](
            data=[conversation_public(r) for r in rows],
            has_more=has_more,
            next_cursor=encode_cursor(rows[-1].id) if has_more else None,
        )

    async def delete(self, who: Principal, conv_id: str) -> None:
        async with self.sessions() as session:
            row = await self._get_row(session, who, conv_id)
            await session.execute(delete(db.Message).where(db.Message.conversation_id == row.id))
            await session.delete(row)
            await session.commit()
        try:
            await self.memory.forget_conversation(who.tenant, conv_id)
        except SomaAgentError:  # a vector store that is down must not block the delete
            log.warning("could not drop the message index of %s", conv_id, exc_info=True)

    async def messages(
        self, who: Principal, conv_id: str, *, limit: int, cursor: str | None
    ) -> types.Page[types.Message]:
        async with self.sessions() as session:
            await self._get_row(session, who, conv_id)
            query = select(db.Message).where(
                db.Message.conversation_id == conv_id, db.Message.tenant_id == who.tenant
            )
            if cursor is not None:
                query = query.where(db.Message.seq > decode_cursor(cursor, int))
            rows = list(
                (await session.scalars(query.order_by(db.Message.seq).limit(limit + 1))).all()
            )
        has_more = len(rows) > limit
        rows = rows[:limit]
        return types.Page[types.Message](
            data=[message_public(r) for r in rows],
            has_more=has_more,
            next_cursor=encode_cursor(rows[-1].seq) if has_more else None,
        )

    async def _append(
        self,
        session: AsyncSession,
        who: Principal,
        conversation: db.Conversation,
        *,
        role: str,
        content: str,
        **fields: Any,
    ) -> db.Message:
        last = await session.scalar(
            select(func.max(db.Message.seq)).where(db.Message.conversation_id == conversation.id)
        )
        now = utcnow()
        row = db.Message(
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
        conversation.updated_at = now
        await session.flush()
        return row

    async def _history(
        self, session: AsyncSession, conversation: db.Conversation
    ) -> list[db.Message]:
        rows = await session.scalars(
            select(db.Message)
            .where(db.Message.conversation_id == conversation.id)
            .order_by(db.Message.seq.desc())
            .limit(self.max_history)
        )
        return list(reversed(rows.all()))


async def _retry_on_seq_race(fn: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``fn`` again when two writers took the same message ``seq`` at once."""
    for attempt in range(5):
        try:
            return await fn(*args, **kwargs)
        except IntegrityError:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")
