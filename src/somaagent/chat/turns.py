"""The chat turn of a conversation: check the key's budget, route, store the user message,
call the model down the fallback chain, store the reply with its usage, cost, latency and
routing, and charge the key. Plain (one answer) or streamed (:class:`~.events.TurnEvent`).

Routing: ``model: "auto"`` or a ``policy`` asks the router to choose (with the default
fallback chain behind its choice); a named model is called as named, retried on retryable
errors behind its circuit breaker. Grounding: a ``collection`` retrieves context from the
tenant's memory and sends the ``rag_context`` prompt in place of the user's words (the stored
message stays as written); the reply carries the sources.

This module prepares and runs the turn; :mod:`~somaagent.chat.settle` settles it (stores the
reply, charges the key, counts the calls) and :mod:`~somaagent.chat.streaming` turns a model
stream into the turn's events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, Protocol

from somaagent import types
from somaagent.accounts.keys import Principal
from somaagent.accounts.usage import UsageLedger
from somaagent.chat import idempotency, settle
from somaagent.chat.context import as_chat_message, check_max_tokens, fit_context
from somaagent.chat.conversations import ConversationService, message_public, retry_on_seq_race
from somaagent.chat.events import Route, TurnEvent
from somaagent.chat.grounding import Grounding
from somaagent.chat.providers import ProviderPool
from somaagent.chat.settle import CallRecorder, Turn
from somaagent.chat.streaming import replay, turn_events
from somaagent.errors import ProviderError, ValidationError
from somaagent.llm.base import ChatMessage, ChatRequest, Completion
from somaagent.llm.fallback import (
    Attempt,
    FallbackConfig,
    complete_with_fallback,
    stream_with_fallback,
)
from somaagent.llm.feedback import RouteFeedback
from somaagent.llm.policy import RoutingDecision
from somaagent.llm.router import Router
from somaagent.llm.specs import ModelSpec

__all__ = ["CallRecorder", "ChatTurns", "Grounder", "Turn"]


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
            return replay(prepared), None
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
        events = turn_events(
            prepared,
            opened,
            finish=lambda turn, spec, completion, attempts: self._finish(
                who, turn, spec, completion, attempts
            ),
            fail=lambda turn, exc, attempts: self._fail(who, turn, exc, attempts=attempts),
        )
        return events, Route.of(prepared.decision, opened.spec, None)

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
        if record_id is not None:
            idempotency.keep_alive(store.sessions, record_id)
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
        return await settle.finish(
            who,
            turn,
            spec,
            completion,
            attempts,
            conversations=self.conversations,
            usage=self.usage,
            calls=self.calls,
            outcomes=self.outcomes,
        )

    async def _fail(
        self, who: Principal, turn: Turn, exc: Exception, *, attempts: tuple[Attempt, ...] = ()
    ) -> None:
        await settle.fail(
            who, turn, exc, conversations=self.conversations, calls=self.calls, attempts=attempts
        )
