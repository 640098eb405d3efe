"""Conversations and messages: storage scoped by tenant, cursor pagination, and the chat
turn (store the user message, call the model with the history, store the reply with its
usage, cost and latency), plain or streamed, with ``Idempotency-Key`` replay.

Every query filters on the caller's tenant, so another tenant's conversation is simply
not found (404), never "forbidden".
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from somaagent import types
from somaagent.errors import APIError, ConflictError, NotFoundError, ProviderError, ValidationError
from somaagent.gateway.db import models as db
from somaagent.gateway.keys import Principal
from somaagent.gateway.metrics import Metrics
from somaagent.gateway.pagination import decode_cursor, encode_cursor
from somaagent.gateway.problems import problem_body, to_api_error
from somaagent.gateway.providers import ProviderPool
from somaagent.gateway.streaming import sse_event
from somaagent.llm import cost, tokens
from somaagent.llm.base import ChatMessage, ChatRequest, Completion
from somaagent.llm.registry import ModelSpec
from somaagent.prompts.service import PromptService

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
        created_at=row.created_at,
    )


@dataclass(slots=True)
class _Turn:
    """A prepared chat turn: the stored user message and what to ask which model."""

    user_message: db.Message
    spec: ModelSpec
    request: ChatRequest
    idempotency_id: str | None


class ConversationService:
    """Conversation storage and chat turns for one gateway."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        pool: ProviderPool,
        metrics: Metrics,
        prompts: PromptService,
        *,
        max_history: int,
        default_max_tokens: int,
    ) -> None:
        self.sessions = sessions
        self.pool = pool
        self.metrics = metrics
        self.prompts = prompts
        self.max_history = max_history
        self.default_max_tokens = default_max_tokens

    # -- conversations -------------------------------------------------------------------

    async def create(self, who: Principal, body: types.ConversationCreate) -> types.Conversation:
        if body.model is not None:
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
        now = db.utcnow()
        row = db.Conversation(
            id=db.new_id("conv"),
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

    # -- chat turns ----------------------------------------------------------------------

    async def send(
        self,
        who: Principal,
        conv_id: str,
        body: types.MessageCreate,
        *,
        idempotency_key: str | None,
    ) -> types.MessageExchange:
        """Run one chat turn and return the stored user message and reply."""
        prepared = await _retry_on_seq_race(self._prepare, who, conv_id, body, idempotency_key)
        if isinstance(prepared, types.MessageExchange):
            return prepared
        started = time.perf_counter()
        try:
            adapter = await self.pool.adapter(prepared.spec)
            completion = await adapter.complete(prepared.request)
        except (ProviderError, APIError) as exc:
            await self._fail(who, prepared, exc, time.perf_counter() - started)
            raise
        return await self._finish(who, prepared, completion, time.perf_counter() - started)

    async def stream(
        self,
        who: Principal,
        conv_id: str,
        body: types.MessageCreate,
        *,
        idempotency_key: str | None,
    ) -> AsyncIterator[bytes]:
        """Prepare the turn now (so bad input is a plain 4xx), then return the SSE stream."""
        prepared = await _retry_on_seq_race(self._prepare, who, conv_id, body, idempotency_key)
        if isinstance(prepared, types.MessageExchange):
            return _replay(prepared)
        return self._stream(who, prepared)

    async def _stream(self, who: Principal, turn: _Turn) -> AsyncIterator[bytes]:
        event_id = 1
        yield sse_event(
            "message.created", {"message": _dump(message_public(turn.user_message))}, event_id
        )
        started = time.perf_counter()
        parts: list[str] = []
        usage: types.Usage | None = None
        finish_reason: str | None = None
        try:
            adapter = await self.pool.adapter(turn.spec)
            async for chunk in adapter.stream(turn.request):
                if chunk.delta:
                    parts.append(chunk.delta)
                    event_id += 1
                    yield sse_event("message.delta", {"delta": chunk.delta}, event_id)
                if chunk.usage is not None:
                    usage = chunk.usage
                if chunk.finish_reason is not None:
                    finish_reason = chunk.finish_reason
        except (ProviderError, APIError) as exc:
            await self._fail(who, turn, exc, time.perf_counter() - started)
            event_id += 1
            yield sse_event("error", problem_body(to_api_error(exc), None), event_id)
            return
        content = "".join(parts)
        if usage is None:
            usage = self._count_usage(turn, content)
        completion = Completion(
            content=content,
            model=turn.request.model,
            provider=turn.spec.provider,
            usage=usage,
            finish_reason=finish_reason,
        )
        exchange = await self._finish(who, turn, completion, time.perf_counter() - started)
        event_id += 1
        yield sse_event("message.completed", {"message": _dump(exchange.reply)}, event_id)

    async def _prepare(
        self,
        who: Principal,
        conv_id: str,
        body: types.MessageCreate,
        idempotency_key: str | None,
    ) -> _Turn | types.MessageExchange:
        async with self.sessions() as session:
            conversation = await self._get_row(session, who, conv_id)
            spec = self.pool.resolve(body.model or conversation.model)
            reuse_message_id: str | None = None
            record_id: str | None = None
            if idempotency_key is not None:
                outcome = await self._claim_key(session, who, conv_id, body, idempotency_key)
                if isinstance(outcome, types.MessageExchange):
                    return outcome
                record_id, reuse_message_id = outcome
            user_message = (
                await session.get(db.Message, reuse_message_id) if reuse_message_id else None
            )
            if user_message is None:
                user_message = await self._append(
                    session, who, conversation, role="user", content=body.content
                )
            if record_id is not None:
                record = await session.get(db.IdempotencyRecord, record_id)
                assert record is not None
                record.response = {"message_id": user_message.id}
            await session.commit()
            history = await self._history(session, conversation)
        max_tokens = body.max_tokens or min(
            self.default_max_tokens, spec.max_output_tokens or self.default_max_tokens
        )
        messages = self._fit_context(spec, conversation.system_prompt, history, max_tokens)
        request = ChatRequest(
            messages=messages,
            model=spec.provider_model_id,
            max_tokens=max_tokens,
            temperature=body.temperature,
        )
        return _Turn(
            user_message=user_message, spec=spec, request=request, idempotency_id=record_id
        )

    async def _claim_key(
        self,
        session: AsyncSession,
        who: Principal,
        conv_id: str,
        body: types.MessageCreate,
        key: str,
    ) -> tuple[str, str | None] | types.MessageExchange:
        """Claim an idempotency key: replay a finished exchange, resume a failed one, or
        start a new record. Returns (record id, user message id to reuse) or the replay."""
        if not 0 < len(key) <= 255:
            raise ValidationError(
                "Idempotency-Key must be 1-255 characters",
                errors=[
                    {
                        "loc": ["header", "Idempotency-Key"],
                        "msg": "bad length",
                        "type": "value_error",
                    }
                ],
            )
        digest = hashlib.sha256(
            (conv_id + "\n" + body.model_dump_json(exclude={"stream"})).encode()
        ).hexdigest()
        record = await session.scalar(
            select(db.IdempotencyRecord).where(
                db.IdempotencyRecord.tenant_id == who.tenant, db.IdempotencyRecord.key == key
            )
        )
        if record is None:
            record = db.IdempotencyRecord(
                id=db.new_id("idem"), tenant_id=who.tenant, key=key, request_hash=digest
            )
            session.add(record)
            try:
                await session.flush()
            except IntegrityError as exc:
                await session.rollback()
                raise ConflictError(
                    "a request with this Idempotency-Key is still in progress"
                ) from exc
            return record.id, None
        if record.request_hash != digest:
            raise ConflictError("this Idempotency-Key was already used for a different request")
        if record.status_code is not None and record.status_code != _FAILED:
            return types.MessageExchange.model_validate(record.response)
        previous = (record.response or {}).get("message_id")
        in_flight = record.status_code is None and db.utcnow() - record.created_at < STALE_IN_FLIGHT
        if in_flight:
            raise ConflictError("a request with this Idempotency-Key is still in progress")
        record.status_code = None
        record.created_at = db.utcnow()
        return record.id, previous

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
        now = db.utcnow()
        row = db.Message(
            id=db.new_id("msg"),
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

    def _fit_context(
        self,
        spec: ModelSpec,
        system_prompt: str | None,
        history: list[db.Message],
        max_tokens: int,
    ) -> list[ChatMessage]:
        """The newest messages that fit the model's context window with room for the reply."""
        system: list[ChatMessage] = (
            [{"role": "system", "content": system_prompt}] if system_prompt else []
        )
        turns: list[ChatMessage] = [
            {"role": m.role, "content": m.content}  # type: ignore[typeddict-item]
            for m in history
        ]
        budget = spec.context_window - max_tokens
        while turns:
            if tokens.count_messages(system + turns, spec) <= budget:
                return system + turns
            if len(turns) == 1:
                break
            turns = turns[1:]
        raise ValidationError(
            f"the message does not fit the context window of {spec.name} "
            f"({spec.context_window} tokens, {max_tokens} kept for the reply)",
            errors=[
                {"loc": ["body", "content"], "msg": "too long for the model", "type": "value_error"}
            ],
        )

    def _count_usage(self, turn: _Turn, content: str) -> types.Usage:
        prompt = tokens.count_messages(turn.request.messages, turn.spec)
        completion = tokens.count_text(content, turn.spec)
        return types.Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )

    async def _finish(
        self, who: Principal, turn: _Turn, completion: Completion, seconds: float
    ) -> types.MessageExchange:
        return await _retry_on_seq_race(self._store_reply, who, turn, completion, seconds)

    async def _store_reply(
        self, who: Principal, turn: _Turn, completion: Completion, seconds: float
    ) -> types.MessageExchange:
        usage = completion.usage
        price = cost.cost_usd(turn.spec, usage)
        self.metrics.record_model_call(
            provider=turn.spec.provider,
            model=turn.spec.name,
            seconds=seconds,
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.completion_tokens,
        )
        async with self.sessions() as session:
            conversation = await self._get_row(session, who, turn.user_message.conversation_id)
            reply = await self._append(
                session,
                who,
                conversation,
                role="assistant",
                content=completion.content,
                model=turn.spec.name,
                provider=turn.spec.provider,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cost_usd=price,
                latency_ms=round(seconds * 1000, 3),
            )
            exchange = types.MessageExchange(
                message=message_public(turn.user_message), reply=message_public(reply)
            )
            if turn.idempotency_id is not None:
                record = await session.get(db.IdempotencyRecord, turn.idempotency_id)
                if record is not None:
                    record.status_code = 201
                    record.response = exchange.model_dump(mode="json")
            await session.commit()
        return exchange

    async def _fail(self, who: Principal, turn: _Turn, exc: Exception, seconds: float) -> None:
        self.metrics.record_model_call(
            provider=turn.spec.provider,
            model=turn.spec.name,
            seconds=seconds,
            error_type=type(exc).__name__,
        )
        if turn.idempotency_id is None:
            return
        async with self.sessions() as session:
            record = await session.get(db.IdempotencyRecord, turn.idempotency_id)
            if record is not None and record.tenant_id == who.tenant:
                record.status_code = _FAILED
                await session.commit()


async def _retry_on_seq_race(fn: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``fn`` again when two writers took the same message ``seq`` at once."""
    for attempt in range(5):
        try:
            return await fn(*args, **kwargs)
        except IntegrityError:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def _dump(model: types.Message) -> dict[str, Any]:
    return model.model_dump(mode="json")


async def _replay(exchange: types.MessageExchange) -> AsyncIterator[bytes]:
    yield sse_event("message.created", {"message": _dump(exchange.message)}, 1)
    yield sse_event("message.delta", {"delta": exchange.reply.content}, 2)
    yield sse_event("message.completed", {"message": _dump(exchange.reply)}, 3)
