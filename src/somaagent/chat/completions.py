"""Stateless chat completions (the OpenAI-compatible endpoint's domain): no conversation is
read or stored, but the call is routed, run down the fallback chain, counted, charged and, when
the router chose, left as an outcome record that feedback can rate.

A named model is called as named: a whole answer with one call to its adapter, a stream behind
its circuit breaker (retried until its first token). ``model: "auto"`` or a ``policy`` asks the
router, and its choice runs down the fallback chain. Every failed try is counted as a failed
model call and the answering call once its answer is complete, so the metrics agree with what
the providers saw.

The gateway translates the wire (the request body, the ``chat.completion`` payload, the
stream's chunks and headers); nothing here knows HTTP. Its steps keep the wire's error order:
:meth:`ChatCompletions.admit` (budget, the named model), then the request's messages,
:meth:`~ChatCompletions.prepare` (the prompt template, the route), then
:meth:`~ChatCompletions.complete` or :meth:`~ChatCompletions.open_stream`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from somaagent.accounts.keys import Principal
from somaagent.accounts.usage import UsageLedger
from somaagent.chat.context import check_max_tokens
from somaagent.chat.events import Route
from somaagent.chat.providers import ProviderPool
from somaagent.chat.settle import CallRecorder, charge, record_attempts
from somaagent.chat.streaming import counted_usage
from somaagent.errors import APIError, ProviderError
from somaagent.llm.base import ChatMessage, ChatRequest, Completion, Model
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
from somaagent.prompts.service import PromptService
from somaagent.types import PromptInvocation, Usage

__all__ = [
    "ChatCompletions",
    "CompletionAnswer",
    "CompletionCall",
    "CompletionEvent",
    "CompletionStream",
]

ENDPOINT = "chat.completions"
"""The endpoint the key's usage is recorded under."""


@dataclass(frozen=True, slots=True)
class CompletionCall:
    """A prepared completion: the model asked and the request.

    Attributes:
        spec: the named model, or the router's choice.
        request: what the model is asked.
        decision: the router's decision; ``None`` for a named model.
        adapter: the named model's adapter (a routed call takes each from the pool in turn).
    """

    spec: ModelSpec
    request: ChatRequest
    decision: RoutingDecision | None
    adapter: Model | None = None

    @property
    def chain(self) -> Sequence[ModelSpec]:
        """The models tried, in order: the router's chain, or the named model alone."""
        return self.decision.chain if self.decision is not None else (self.spec,)


@dataclass(frozen=True, slots=True)
class CompletionAnswer:
    """A whole answer, settled (counted, charged and, when routed, recorded).

    Attributes:
        spec: the model that answered (the chosen one or a fallback).
        completion: its answer, with usage.
        cost_usd: what the call cost.
        decision: the router's decision; ``None`` for a named model.
        attempts: every try down the fallback chain (none for a named model).
    """

    spec: ModelSpec
    completion: Completion
    cost_usd: float
    decision: RoutingDecision | None
    attempts: tuple[Attempt, ...] = ()

    @property
    def route(self) -> Route | None:
        """The route it took, with its cost; ``None`` for a named model."""
        return None if self.decision is None else Route.of(self.decision, self.spec, self.cost_usd)


@dataclass(frozen=True, slots=True)
class CompletionEvent:
    """One event of a streamed completion, in order: ``delta``\\ s, then ``done`` (the call is
    settled) or ``error`` (it failed part-way; nothing follows).

    Attributes:
        kind: ``delta``, ``done`` or ``error``.
        delta: the text of a ``delta``.
        usage: the call's usage, for ``done`` (counted here when the provider sent none).
        finish_reason: why the answer ended, for ``done``.
        error: what failed, for ``error``.
    """

    kind: Literal["delta", "done", "error"]
    delta: str = ""
    usage: Usage | None = None
    finish_reason: str = "stop"
    error: Exception | None = None


class CompletionStream:
    """A completion's stream, open (its first token is in); iterate :meth:`events` once.

    Attributes:
        spec: the model that is answering.
        decision: the router's decision; ``None`` for a named model.
    """

    def __init__(
        self, service: ChatCompletions, who: Principal, call: CompletionCall, opened: FallbackStream
    ) -> None:
        self._service = service
        self._who = who
        self._call = call
        self._opened = opened
        self.decision = call.decision
        # the named model answers its own stream; a routed one, whichever of the chain opened
        self.spec = call.spec if call.decision is None else opened.spec

    @property
    def route(self) -> Route | None:
        """The route, without a cost (unknown until the end); ``None`` for a named model."""
        return None if self.decision is None else Route.of(self.decision, self.spec, None)

    async def events(self, *, outcome_id: str) -> AsyncGenerator[CompletionEvent, None]:
        """The answer's events; a routed answer that completes leaves its outcome record (as
        ``outcome_id``) before ``done``, so the id can be rated once the stream has ended."""
        service, spec = self._service, self.spec
        started = time.perf_counter()
        usage: Usage | None = None
        finish_reason = "stop"
        parts: list[str] = []
        try:
            async for piece in self._opened:
                if piece.delta:
                    parts.append(piece.delta)
                    yield CompletionEvent("delta", delta=piece.delta)
                if piece.usage is not None:
                    usage = piece.usage
                if piece.finish_reason is not None:
                    finish_reason = piece.finish_reason
        except (ProviderError, APIError) as exc:
            service.calls.record_model_call(
                provider=spec.provider,
                model=spec.name,
                seconds=time.perf_counter() - started,
                error_type=type(exc).__name__,
            )
            yield CompletionEvent("error", error=exc)
            return
        answer = "".join(parts)
        if usage is None:
            usage = counted_usage(spec, self._call.request.messages, answer)
        record_attempts(service.calls, (), spec, time.perf_counter() - started, usage)
        price = charge(service.usage, self._who, spec, usage, endpoint=ENDPOINT)
        if self.decision is not None:
            await service.record_outcome(
                self._who, outcome_id, self._call, spec, usage, price, answer
            )
        yield CompletionEvent("done", usage=usage, finish_reason=finish_reason)


class ChatCompletions:
    """Runs stateless chat completions.

    Args:
        pool: resolves models and hands out their adapters.
        router: decides ``auto`` and policies; its health tracks the breakers.
        usage: checks budgets and charges the caller's key.
        calls: records every model call (metrics).
        prompts: renders a request's stored prompt template.
        fallback: retries and timeouts down the fallback chain.
        outcomes: keeps each routed answer's outcome record, for tenant feedback, shadow
            evaluation and router training; ``None``: none kept.
    """

    def __init__(
        self,
        pool: ProviderPool,
        router: Router,
        usage: UsageLedger,
        calls: CallRecorder,
        prompts: PromptService,
        *,
        fallback: FallbackConfig,
        outcomes: RouteFeedback | None = None,
    ) -> None:
        self.pool = pool
        self.router = router
        self.usage = usage
        self.calls = calls
        self.prompts = prompts
        self.fallback = fallback
        self.outcomes = outcomes

    async def admit(
        self, who: Principal, model: str, policy: dict[str, Any] | None
    ) -> ModelSpec | None:
        """Check the key's budget; the named model's spec, or ``None`` when the router chooses
        (``model: "auto"`` or a policy)."""
        await self.usage.check_budget(who)
        routed = model == "auto" or policy is not None
        return None if routed else self.pool.resolve(model)

    async def prepare(
        self,
        who: Principal,
        spec: ModelSpec | None,
        messages: list[ChatMessage],
        *,
        policy: dict[str, Any] | None,
        prompt: PromptInvocation | None,
        max_tokens: int | None,
        temperature: float | None,
        stop: list[str] | None,
        stream: bool,
    ) -> CompletionCall:
        """The call: the rendered ``prompt`` in front of ``messages``, then the named model
        (``spec``, its token cap checked) or the router's decision."""
        if prompt is not None:
            rendered = await self.prompts.render(
                who.tenant,
                prompt.name,
                prompt.variables,
                loc=("body", "prompt", "variables"),
                ref_loc=("body", "prompt", "name"),
            )
            messages.insert(0, {"role": rendered.role, "content": rendered.content})
        if spec is None:
            decision = self.router.decide(
                messages,
                policy,
                available=self.pool.is_available,
                max_tokens=max_tokens,
                stream=stream,
                tenant=who.tenant,
            )
            request = self._request(decision.spec, messages, max_tokens, temperature, stop)
            return CompletionCall(decision.spec, request, decision)
        check_max_tokens(spec, max_tokens)
        request = self._request(spec, messages, max_tokens, temperature, stop)
        return CompletionCall(spec, request, None, await self.pool.adapter(spec))

    async def complete(
        self, who: Principal, call: CompletionCall, *, outcome_id: str
    ) -> CompletionAnswer:
        """The whole answer, counted and charged; a routed one leaves its outcome record as
        ``outcome_id``. A failed call is counted and raised."""
        started = time.perf_counter()
        if call.adapter is not None:  # a named model: one call, as named
            spec = call.spec
            try:
                completion = await call.adapter.complete(call.request)
            except ProviderError as exc:
                self.calls.record_model_call(
                    provider=spec.provider,
                    model=spec.name,
                    seconds=time.perf_counter() - started,
                    error_type=type(exc).__name__,
                )
                raise
            attempts: tuple[Attempt, ...] = ()
        else:
            try:
                result = await complete_with_fallback(
                    call.chain,
                    call.request,
                    adapter_for=self.pool.adapter,
                    health=self.router.health,
                    config=self.fallback,
                )
            except ProviderError as exc:
                record_attempts(self.calls, tuple(getattr(exc, "attempts", ())), None, 0.0, None)
                raise
            spec, completion, attempts = result.spec, result.completion, result.attempts
        record_attempts(self.calls, attempts, spec, time.perf_counter() - started, completion.usage)
        price = charge(self.usage, who, spec, completion.usage, endpoint=ENDPOINT)
        if call.decision is not None:
            await self.record_outcome(
                who, outcome_id, call, spec, completion.usage, price, completion.content
            )
        return CompletionAnswer(spec, completion, price, call.decision, attempts)

    async def open_stream(self, who: Principal, call: CompletionCall) -> CompletionStream:
        """Open the call's stream down its chain, once its first token is in: a failure before
        it raises here (every failed try counted), not part-way through the answer."""
        try:
            opened = await stream_with_fallback(
                call.chain,
                call.request,
                adapter_for=self.pool.adapter,
                health=self.router.health,
                config=self.fallback,
            )
        except ProviderError as exc:
            record_attempts(self.calls, tuple(getattr(exc, "attempts", ())), None, 0.0, None)
            raise
        record_attempts(self.calls, opened.attempts, None, 0.0, None)
        return CompletionStream(self, who, call, opened)

    async def record_outcome(
        self,
        who: Principal,
        outcome_id: str,
        call: CompletionCall,
        spec: ModelSpec,
        usage: Usage,
        price: float,
        answer: str,
    ) -> None:
        """Keep a routed answer's outcome record (the one feedback rates), if records are kept."""
        if self.outcomes is None or call.decision is None:
            return
        await self.outcomes.record(
            who.tenant,
            outcome_id,
            call.decision,
            spec,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=float(price),
            messages=call.request.messages,
            answer=answer,
        )

    @staticmethod
    def _request(
        spec: ModelSpec,
        messages: list[ChatMessage],
        max_tokens: int | None,
        temperature: float | None,
        stop: list[str] | None,
    ) -> ChatRequest:
        return ChatRequest(
            messages=messages,
            model=spec.provider_model_id,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
        )
