"""The chat turn of a conversation: check the key's budget, route, store the user message,
call the model down the fallback chain, store the reply with its usage, cost, latency and
routing, and charge the key. Plain (one answer) or streamed (:class:`~.events.TurnEvent`).

Routing: ``model: "auto"`` or a ``policy`` asks the router to choose (with the default
fallback chain behind its choice); a named model is called as named, retried on retryable
errors behind its circuit breaker. Grounding: a ``collection`` retrieves context from the
tenant's memory and sends the ``rag_context`` prompt in place of the user's words (the stored
message stays as written); the reply carries the sources.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol

from somaagent import types
from somaagent.accounts.keys import Principal
from somaagent.accounts.usage import UsageLedger
from somaagent.chat import idempotency
from somaagent.chat.context import as_chat_message, check_max_tokens, fit_context
from somaagent.chat.conversations import ConversationService, message_public, retry_on_seq_race
from somaagent.chat.events import Route, TurnEvent
from somaagent.chat.grounding import Grounding
from somaagent.chat.providers import ProviderPool
from somaagent.chat.tables import Message
from somaagent.errors import APIError, ProviderError, ValidationError
from somaagent.llm import cost, tokens
from somaagent.llm.base import ChatMessage, ChatRequest, Completion, StreamChunk
from somaagent.llm.fallback import (
    Attempt,
    FallbackConfig,
    FallbackStream,
    complete_with_fallback,
    stream_with_fallback,
)
from somaagent.llm.feedback import RouteFeedback
from somaagent.llm.policy import RoutingDecision
from somaagent.llm.router import Router
from somaagent.llm.specs import ModelSpec

__all__ = ["CallRecorder", "ChatTurns", "Grounder", "Turn"]


class CallRecorder(Protocol):
    """Records each model call (the gateway's metrics)."""

    def record_model_call(
        self,
        *,
        provider: str,
        model: str,
        seconds: float,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        error_type: str = "",
    ) -> None: ...


class Grounder(Protocol):
    """Grounds a turn in a collection (:func:`~somaagent.chat.grounding.ground`, bound to the
    memory and prompt services)."""

    def __call__(
        self,
        tenant: str,
        collection: str,
        query: str,
        *,
        spec: ModelSpec | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> Awaitable[Grounding]: ...


@dataclass(slots=True)
class Turn:
    """A prepared chat turn: the stored user message, the decision and the request."""

    user_message: Message
    decision: RoutingDecision
    request: ChatRequest
    idempotency_id: str | None
    sources: list[dict[str, Any]] | None = None
    started: float = field(default_factory=time.perf_counter)


class ChatTurns:
    """Runs chat turns.

    Args:
        conversations: the conversation store the turn reads and writes.
        pool: resolves models and hands out their adapters.
        router: decides ``auto`` and policies; its health tracks the breakers.
        usage: checks budgets and charges the caller's key.
        calls: records every model call (metrics).
        default_max_tokens: the reply's token cap when the request sets none.
        fallback: retries and timeouts down the fallback chain.
        grounder: grounds turns that name a collection; ``None``: memory is off (a 422).
        outcomes: keeps each routed reply's outcome record, for tenant feedback and router
            training; ``None``: none kept.
    """

    def __init__(
        self,
        conversations: ConversationService,
        pool: ProviderPool,
        router: Router,
        usage: UsageLedger,
        calls: CallRecorder,
        *,
        default_max_tokens: int,
        fallback: FallbackConfig,
        grounder: Grounder | None = None,
        outcomes: RouteFeedback | None = None,
    ) -> None:
        self.conversations = conversations
        self.pool = pool
        self.router = router
        self.usage = usage
        self.calls = calls
        self.default_max_tokens = default_max_tokens
        self.fallback = fallback
        self.grounder = grounder
        self.outcomes = outcomes

    def decide(
        self,
        model: str | None,
        policy: dict[str, Any] | None,
        messages: list[ChatMessage],
        *,
        max_tokens: int | None,
        stream: bool,
        tenant: str | None = None,
    ) -> RoutingDecision:
        """The router's decision for ``auto`` or a policy; the named (or default) model else
        (``tenant``: whose promoted router heads apply, if it has any)."""
        if policy is not None and model not in (None, "auto"):
            raise ValidationError(
                "a policy asks the router to choose: send model 'auto' (or none) with it",
                errors=[
                    {
                        "loc": ["body", "model"],
                        "msg": "must be auto with a policy",
                        "type": "value_error",
                    }
                ],
            )
        if model == "auto" or policy is not None:
            return self.router.decide(
                messages,
                policy,
                available=self.pool.is_available,
                max_tokens=max_tokens,
                stream=stream,
                tenant=tenant,
            )
        spec = self.pool.resolve(model)
        check_max_tokens(spec, max_tokens)
        return self.router.explicit(
            spec.name, messages, available=self.pool.is_available, fallbacks=()
        )

    async def send(
        self,
        who: Principal,
        conv_id: str,
        body: types.MessageCreate,
        *,
        idempotency_key: str | None,
    ) -> tuple[types.MessageExchange, Route | None]:
        """Run one chat turn: the stored exchange and its route (``None`` for a replay)."""
        prepared = await retry_on_seq_race(self._prepare, who, conv_id, body, idempotency_key)
        if isinstance(prepared, types.MessageExchange):
            return prepared, None
        try:
            result = await complete_with_fallback(
                prepared.decision.chain,
                prepared.request,
                adapter_for=self.pool.adapter,
                health=self.router.health,
                config=self.fallback,
            )
        except ProviderError as exc:
            await self._fail(who, prepared, exc)
            raise
        exchange = await self._finish(
            who, prepared, result.spec, result.completion, result.attempts
        )
        return exchange, Route.of(prepared.decision, result.spec, exchange.reply.cost_usd)

    async def stream(
        self,
        who: Principal,
        conv_id: str,
        body: types.MessageCreate,
        *,
        idempotency_key: str | None,
    ) -> tuple[AsyncIterator[TurnEvent], Route | None]:
        """Prepare the turn and open the model's stream (bad input and a model that fails
        before its first token raise here); then the turn's events, and its route (without a
        cost, unknown until the end; ``None`` for a replay)."""
        prepared = await retry_on_seq_race(self._prepare, who, conv_id, body, idempotency_key)
        if isinstance(prepared, types.MessageExchange):
            return _replay(prepared), None
        try:
            opened = await stream_with_fallback(
                prepared.decision.chain,
                prepared.request,
                adapter_for=self.pool.adapter,
                health=self.router.health,
                config=self.fallback,
            )
        except ProviderError as exc:
            await self._fail(who, prepared, exc)
            raise
        return self._events(who, prepared, opened), Route.of(prepared.decision, opened.spec, None)

    async def _events(
        self, who: Principal, turn: Turn, opened: FallbackStream
    ) -> AsyncIterator[TurnEvent]:
        yield TurnEvent("message.created", {"message": _dump(message_public(turn.user_message))})
        parts: list[str] = []
        usage: types.Usage | None = None
        finish_reason: str | None = None
        try:
            async with aclosing(opened.__aiter__()) as chunks:
                chunk: StreamChunk
                async for chunk in chunks:
                    if chunk.delta:
                        parts.append(chunk.delta)
                        yield TurnEvent("message.delta", {"delta": chunk.delta})
                    usage = chunk.usage or usage
                    finish_reason = chunk.finish_reason or finish_reason
        except (ProviderError, APIError) as exc:
            await self._fail(who, turn, exc, attempts=opened.attempts)
            yield TurnEvent("error", error=exc)
            return
        spec = opened.spec
        content = "".join(parts)
        if usage is None:
            prompt = tokens.count_messages(turn.request.messages, spec)
            completion_tokens = tokens.count_text(content, spec)
            usage = types.Usage(
                prompt_tokens=prompt,
                completion_tokens=completion_tokens,
                total_tokens=prompt + completion_tokens,
            )
        completion = Completion(
            content=content,
            model=spec.provider_model_id,
            provider=spec.provider,
            usage=usage,
            finish_reason=finish_reason,
        )
        exchange = await self._finish(who, turn, spec, completion, opened.attempts)
        yield TurnEvent("message.completed", {"message": _dump(exchange.reply)})

    async def _prepare(
        self, who: Principal, conv_id: str, body: types.MessageCreate, idempotency_key: str | None
    ) -> Turn | types.MessageExchange:
        await self.usage.check_budget(who)
        store = self.conversations
        async with store.sessions() as session:
            conversation = await store.load(session, who, conv_id)
            record_id: str | None = None
            reuse_id: str | None = None
            if idempotency_key is not None:
                outcome = await idempotency.claim(session, who, conv_id, body, idempotency_key)
                if isinstance(outcome, types.MessageExchange):
                    return outcome
                record_id, reuse_id = outcome
            history = await store.history(session, conversation)
            reused = next((m for m in history if m.id == reuse_id), None) if reuse_id else None
            system: list[ChatMessage] = (
                [{"role": "system", "content": conversation.system_prompt}]
                if conversation.system_prompt
                else []
            )
            turns = [as_chat_message(m) for m in history]
            if reused is None:
                turns.append({"role": "user", "content": body.content})
            decision = self.decide(
                body.model or conversation.model,
                body.policy,
                system + turns,
                max_tokens=body.max_tokens,
                stream=body.stream,
                tenant=who.tenant,
            )
            spec = decision.spec
            sources: list[dict[str, Any]] | None = None
            if body.collection is not None:
                grounding = await self._ground(who, body, spec)
                turns[-1] = {"role": "user", "content": grounding.prompt}
                sources = [s.model_dump(mode="json") for s in grounding.sources]
            user_message = reused or await store.append(
                session, who, conversation, role="user", content=body.content
            )
            if record_id is not None:
                await idempotency.remember_message(session, record_id, user_message.id)
            await session.commit()
        if reused is None:
            store.memory.message_stored(who.tenant, message_public(user_message))
        max_tokens = body.max_tokens or min(self.default_max_tokens, spec.max_output_tokens)
        request = ChatRequest(
            messages=fit_context(spec, system, turns, max_tokens),
            model=spec.provider_model_id,
            max_tokens=max_tokens,
            temperature=body.temperature,
        )
        return Turn(user_message, decision, request, record_id, sources)

    async def _ground(
        self, who: Principal, body: types.MessageCreate, spec: ModelSpec
    ) -> Grounding:
        if self.grounder is None:
            raise ValidationError(
                "grounding needs the memory service, which is not enabled on this gateway",
                errors=[
                    {"loc": ["body", "collection"], "msg": "memory disabled", "type": "value_error"}
                ],
            )
        assert body.collection is not None
        return await self.grounder(
            who.tenant, body.collection, body.content, spec=spec, filter=body.filter
        )

    async def _finish(
        self,
        who: Principal,
        turn: Turn,
        spec: ModelSpec,
        completion: Completion,
        attempts: tuple[Attempt, ...],
    ) -> types.MessageExchange:
        usage = completion.usage
        price = cost.cost_usd(spec, usage)
        seconds = time.perf_counter() - turn.started
        self._record_attempts(attempts, spec, seconds, usage)
        self.usage.record(
            who,
            endpoint="conversations",
            model=spec.name,
            provider=spec.provider,
            usage=usage,
            cost_usd=price,
        )
        extra: dict[str, Any] = {"route": _route_summary(turn.decision, spec, attempts)}
        if turn.sources is not None:
            extra["sources"] = turn.sources

        async def store() -> types.MessageExchange:
            conversations = self.conversations
            async with conversations.sessions() as session:
                conversation = await conversations.load(
                    session, who, turn.user_message.conversation_id
                )
                reply = await conversations.append(
                    session,
                    who,
                    conversation,
                    role="assistant",
                    content=completion.content,
                    model=spec.name,
                    provider=spec.provider,
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    cost_usd=price,
                    latency_ms=round(seconds * 1000, 3),
                    extra=extra,
                )
                exchange = types.MessageExchange(
                    message=message_public(turn.user_message), reply=message_public(reply)
                )
                if turn.idempotency_id is not None:
                    await idempotency.complete(session, turn.idempotency_id, exchange)
                await session.commit()
            return exchange

        exchange = await retry_on_seq_race(store)
        self.conversations.memory.message_stored(who.tenant, exchange.reply)
        if self.outcomes is not None and turn.decision.candidates:  # routed, not a named model
            await self.outcomes.record(
                who.tenant,
                exchange.reply.id,
                turn.decision,
                spec,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cost_usd=float(price),
            )
        return exchange

    def _record_attempts(
        self,
        attempts: tuple[Attempt, ...],
        spec: ModelSpec | None,
        seconds: float,
        usage: types.Usage | None,
    ) -> None:
        for attempt in attempts:
            if attempt.outcome == "failed":
                self.calls.record_model_call(
                    provider=attempt.provider,
                    model=attempt.model,
                    seconds=attempt.latency_ms / 1000,
                    error_type=attempt.error_type or "error",
                )
        if spec is not None and usage is not None:
            self.calls.record_model_call(
                provider=spec.provider,
                model=spec.name,
                seconds=seconds,
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.completion_tokens,
            )

    async def _fail(
        self, who: Principal, turn: Turn, exc: Exception, *, attempts: tuple[Attempt, ...] = ()
    ) -> None:
        attempts = attempts or tuple(getattr(exc, "attempts", ()))
        if attempts:
            self._record_attempts(attempts, None, 0.0, None)
        else:
            spec = turn.decision.spec
            self.calls.record_model_call(
                provider=spec.provider,
                model=spec.name,
                seconds=time.perf_counter() - turn.started,
                error_type=type(exc).__name__,
            )
        if turn.idempotency_id is None:
            return
        async with self.conversations.sessions() as session:
            await idempotency.fail(session, turn.idempotency_id, who.tenant)
            await session.commit()


def _route_summary(
    decision: RoutingDecision, spec: ModelSpec, attempts: tuple[Attempt, ...]
) -> dict[str, Any]:
    return {
        "model": spec.name,
        "chosen": decision.spec.name,
        "reason": decision.reason,
        "estimated_cost_usd": decision.estimated_cost_usd,
        "fallbacks": [s.name for s in decision.fallbacks],
        "attempts": [a.describe() for a in attempts],
    }


def _dump(model: types.Message) -> dict[str, Any]:
    return model.model_dump(mode="json")


async def _replay(exchange: types.MessageExchange) -> AsyncIterator[TurnEvent]:
    yield TurnEvent("message.created", {"message": _dump(exchange.message)})
    yield TurnEvent("message.delta", {"delta": exchange.reply.content})
    yield TurnEvent("message.completed", {"message": _dump(exchange.reply)})
