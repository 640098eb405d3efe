"""Fallback chains: try the chosen model, then the next, until one answers.

:func:`complete_with_fallback` and :func:`stream_with_fallback` take a chain of registry models
(usually :attr:`RoutingDecision.chain <somaagent.llm.policy.RoutingDecision.chain>`) and a
:class:`~somaagent.llm.base.ChatRequest`, and call each model in turn:

* a **retryable** error (rate limit, overload, timeout, connection, a malformed or cut answer)
  is retried on the same model up to ``retries`` times, after ``Retry-After`` or an exponential
  backoff; a wait longer than ``max_retry_wait_s`` moves on to the next model at once;
* any other error (bad request, authentication) moves on to the next model;
* a model whose circuit breaker is open is skipped (:class:`~somaagent.llm.health.HealthTracker`);
* every attempt has a deadline (``attempt_timeout_s``: the whole answer, or a stream's first
  token) and the chain one more (``total_timeout_s``), so a stalled provider never hangs a call;
* a **stream** falls back only while nothing has been sent: :func:`stream_with_fallback` returns
  once the first token has arrived, so the caller knows which model answers before sending
  headers. A failure after that is raised to the caller (an error event), never a silently
  shorter answer.

When every model fails, one :class:`~somaagent.errors.ProviderFallbackError` lists each attempt
and why. Each call's outcome feeds the health tracker (bad requests excepted: they are the
request's fault, not the model's). :class:`FallbackModel` wraps a chain as a
:class:`~somaagent.llm.base.Model`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Literal

import anyio

from somaagent.errors import (
    ProviderBadRequestError,
    ProviderError,
    ProviderFallbackError,
    ProviderResponseError,
    ProviderTimeoutError,
)
from somaagent.llm.base import ChatRequest, Completion, Model, StreamChunk
from somaagent.llm.health import HealthTracker
from somaagent.llm.registry import ModelSpec

__all__ = [
    "AdapterFor",
    "Attempt",
    "FallbackConfig",
    "FallbackModel",
    "FallbackResult",
    "FallbackStream",
    "complete_with_fallback",
    "stream_with_fallback",
]

AdapterFor = Callable[[ModelSpec], Awaitable[Model]]
"""Returns the adapter that calls a model (the gateway's ``ProviderPool.adapter``)."""
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class FallbackConfig:
    """Retries and deadlines.

    Attributes:
        retries: extra tries of the same model after a retryable error.
        backoff_s: the wait before the first retry (doubling), when the provider gave none.
        max_retry_wait_s: a longer ``Retry-After`` moves on to the next model instead.
        attempt_timeout_s: the deadline of one try: the whole answer, or a stream's first token.
        total_timeout_s: the deadline of the whole chain.
    """

    retries: int = 1
    backoff_s: float = 0.25
    max_retry_wait_s: float = 2.0
    attempt_timeout_s: float = 60.0
    total_timeout_s: float = 180.0


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of one model.

    Attributes:
        model: the registry name.
        provider: its provider.
        outcome: ``ok``, ``failed``, or ``skipped`` (circuit open, or no time left).
        error: what went wrong, for ``failed`` and ``skipped``.
        error_type: the exception class name.
        status_code: the provider's HTTP status, when there was one.
        latency_ms: how long the try took.
    """

    model: str
    provider: str
    outcome: Literal["ok", "failed", "skipped"]
    error: str | None = None
    error_type: str | None = None
    status_code: int | None = None
    latency_ms: float = 0.0

    def describe(self) -> str:
        """One line, as in :class:`~somaagent.errors.ProviderFallbackError`'s message."""
        if self.outcome == "ok":
            return f"{self.model}: ok in {self.latency_ms:.0f} ms"
        kind = f"{self.error_type}: " if self.error_type else ""
        status = f" (HTTP {self.status_code})" if self.status_code else ""
        return f"{self.model} ({self.provider}) {self.outcome}: {kind}{self.error}{status}"


@dataclass(frozen=True, slots=True)
class FallbackResult:
    """A whole answer and how it was obtained."""

    completion: Completion
    spec: ModelSpec
    attempts: tuple[Attempt, ...]


def _failed(spec: ModelSpec, exc: ProviderError, started: float) -> Attempt:
    return Attempt(
        model=spec.name,
        provider=spec.provider,
        outcome="failed",
        error=exc.message,
        error_type=type(exc).__name__,
        status_code=exc.status_code,
        latency_ms=(time.perf_counter() - started) * 1000.0,
    )


def _all_failed(
    attempts: Sequence[Attempt], errors: Sequence[ProviderError]
) -> ProviderFallbackError:
    models = list(dict.fromkeys(a.model for a in attempts))
    lines = "; ".join(a.describe() for a in attempts) or "the chain is empty"
    message = f"all {len(models)} model(s) failed: {lines}"
    return ProviderFallbackError(message, attempts=attempts, errors=errors)


@dataclass
class _Run:
    """The state of one pass down the chain."""

    chain: Sequence[ModelSpec]
    request: ChatRequest
    adapter_for: AdapterFor
    health: HealthTracker | None
    config: FallbackConfig
    sleep: Sleep
    deadline: float = 0.0
    attempts: list[Attempt] = field(default_factory=list)
    errors: list[ProviderError] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.config.total_timeout_s

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def skip(self, spec: ModelSpec, why: str) -> None:
        self.attempts.append(Attempt(spec.name, spec.provider, "skipped", error=why))

    def fail(self, spec: ModelSpec, exc: ProviderError, started: float) -> None:
        self.attempts.append(_failed(spec, exc, started))
        self.errors.append(exc)
        if self.health is not None and not isinstance(exc, ProviderBadRequestError):
            self.health.record(spec.name, (time.perf_counter() - started) * 1000.0, False)

    def succeed(self, spec: ModelSpec, started: float, output_tokens: int) -> None:
        latency = (time.perf_counter() - started) * 1000.0
        self.attempts.append(Attempt(spec.name, spec.provider, "ok", latency_ms=latency))
        if self.health is not None:
            expected = spec.latency.expected_ms(output_tokens)
            self.health.record(spec.name, latency, True, expected_ms=expected)

    def timeout(self, spec: ModelSpec) -> float:
        return max(0.0, min(self.config.attempt_timeout_s, self.left()))

    def timed_out(self, spec: ModelSpec, seconds: float) -> ProviderTimeoutError:
        return ProviderTimeoutError(f"no answer within {seconds:.3g} s", provider=spec.provider)

    def may_try(self, spec: ModelSpec) -> bool:
        """Whether ``spec`` may be tried now; records a skip when not."""
        if self.left() <= 0:
            self.skip(spec, "no time left before the chain's deadline")
            return False
        if self.health is not None and not self.health.allow(spec.name):
            self.skip(spec, "circuit open after repeated failures")
            return False
        return True

    async def retry(self, spec: ModelSpec, number: int) -> bool:
        """After try ``number`` of ``spec`` failed: wait and return ``True`` to try it again."""
        last = self.errors[-1]
        if not last.retryable or number >= self.config.retries:
            return False
        wait = (
            last.retry_after if last.retry_after is not None else self.config.backoff_s * 2**number
        )
        if wait > min(self.config.max_retry_wait_s, self.left()):
            return False  # another model now beats this one later
        await self.sleep(wait)
        return True

    def request_for(self, spec: ModelSpec) -> ChatRequest:
        return dataclasses.replace(self.request, model=spec.provider_model_id)


async def complete_with_fallback(
    chain: Sequence[ModelSpec],
    request: ChatRequest,
    *,
    adapter_for: AdapterFor,
    health: HealthTracker | None = None,
    config: FallbackConfig | None = None,
    sleep: Sleep = anyio.sleep,
) -> FallbackResult:
    """The first whole answer down ``chain``.

    Args:
        chain: the models to try, in order.
        request: what to ask; its ``model`` is replaced by each model's provider id.
        adapter_for: the adapter for a model.
        health: records each outcome and holds the circuit breakers.
        config: retries and deadlines.
        sleep: waits between retries (tests pass a fake).

    Raises:
        ProviderFallbackError: every model failed or was skipped; ``attempts`` says how.
    """
    run = _Run(chain, request, adapter_for, health, config or FallbackConfig(), sleep)
    for spec in chain:
        number = 0
        while run.may_try(spec):
            started = time.perf_counter()
            seconds = run.timeout(spec)
            try:
                adapter = await adapter_for(spec)
                with anyio.fail_after(seconds):
                    completion = await adapter.complete(run.request_for(spec))
            except ProviderError as exc:
                run.fail(spec, exc, started)
            except TimeoutError:
                run.fail(spec, run.timed_out(spec, seconds), started)
            else:
                run.succeed(spec, started, completion.usage.completion_tokens)
                return FallbackResult(completion, spec, tuple(run.attempts))
            if not await run.retry(spec, number):
                break
            number += 1
    raise _all_failed(run.attempts, run.errors)


class FallbackStream:
    """A stream that has already produced its first token, from the model in :attr:`spec`.

    Iterate it for the whole answer (the first chunk included). A failure after the first token
    is raised from the iteration, recorded in :attr:`attempts` and in the health tracker; there
    is no fallback once text has been produced. Close it with :meth:`aclose` if you stop early.

    Attributes:
        spec: the model that is answering.
        attempts: every try so far; the last one is this model's (``ok`` once the stream ends).
    """

    def __init__(
        self,
        spec: ModelSpec,
        first: list[StreamChunk],
        rest: AsyncGenerator[StreamChunk, None],
        run: _Run,
        started: float,
    ) -> None:
        self.spec = spec
        self._first = first
        self._rest = rest
        self._run = run
        self._started = started
        self._tokens = 0
        self._finished = False

    @property
    def attempts(self) -> tuple[Attempt, ...]:
        """Every try so far, oldest first."""
        return tuple(self._run.attempts)

    def __aiter__(self) -> AsyncGenerator[StreamChunk, None]:
        return self._iterate()

    async def _iterate(self) -> AsyncGenerator[StreamChunk, None]:
        try:
            for chunk in self._first:
                yield self._count(chunk)
            self._first = []
            async for chunk in self._rest:
                yield self._count(chunk)
        except ProviderError as exc:
            self._run.fail(self.spec, exc, self._started)
            raise
        finally:
            await self._rest.aclose()
        if not self._finished:
            self._finished = True
            self._run.succeed(self.spec, self._started, self._tokens)

    def _count(self, chunk: StreamChunk) -> StreamChunk:
        if chunk.usage is not None:
            self._tokens = chunk.usage.completion_tokens
        elif chunk.delta:
            self._tokens += 1
        return chunk

    async def aclose(self) -> None:
        """Stop reading and release the connection."""
        await self._rest.aclose()


async def _first_token(
    stream: AsyncGenerator[StreamChunk, None],
) -> list[StreamChunk]:
    """Read up to the first chunk with text or a finish reason; raise if the stream ends first."""
    buffered: list[StreamChunk] = []
    async for chunk in stream:
        if chunk.delta or chunk.finish_reason is not None or chunk.usage is not None:
            buffered.append(chunk)
        if chunk.delta or chunk.finish_reason is not None:
            return buffered
    return buffered


async def stream_with_fallback(
    chain: Sequence[ModelSpec],
    request: ChatRequest,
    *,
    adapter_for: AdapterFor,
    health: HealthTracker | None = None,
    config: FallbackConfig | None = None,
    sleep: Sleep = anyio.sleep,
) -> FallbackStream:
    """Open a stream down ``chain``: return once a model has produced its first token.

    Arguments as for :func:`complete_with_fallback`; ``attempt_timeout_s`` bounds the wait for
    the first token.

    Raises:
        ProviderFallbackError: no model produced a first token; ``attempts`` says why.
    """
    run = _Run(chain, request, adapter_for, health, config or FallbackConfig(), sleep)
    for spec in chain:
        number = 0
        while run.may_try(spec):
            started = time.perf_counter()
            seconds = run.timeout(spec)
            stream: AsyncGenerator[StreamChunk, None] | None = None
            try:
                adapter = await adapter_for(spec)
                stream = _as_generator(adapter.stream(run.request_for(spec)))
                with anyio.fail_after(seconds):
                    first = await _first_token(stream)
                if not first:
                    raise ProviderResponseError(
                        "the stream ended before its first token", provider=spec.provider
                    )
            except ProviderError as exc:
                await _close(stream)
                run.fail(spec, exc, started)
            except TimeoutError:
                await _close(stream)
                run.fail(spec, run.timed_out(spec, seconds), started)
            else:
                return FallbackStream(spec, first, stream, run, started)
            if not await run.retry(spec, number):
                break
            number += 1
    raise _all_failed(run.attempts, run.errors)


def _as_generator(stream: AsyncIterator[StreamChunk]) -> AsyncGenerator[StreamChunk, None]:
    if isinstance(stream, AsyncGenerator):
        return stream
    return _wrap(stream)  # pragma: no cover - every built-in adapter returns a generator


async def _wrap(stream: AsyncIterator[StreamChunk]) -> AsyncGenerator[StreamChunk, None]:
    async for chunk in stream:  # pragma: no cover
        yield chunk


async def _close(stream: AsyncGenerator[StreamChunk, None] | None) -> None:
    if stream is not None:
        with anyio.CancelScope(shield=True):
            await stream.aclose()


class FallbackModel(Model):
    """A :class:`~somaagent.llm.base.Model` that answers from the first model of a chain that
    works (pydantic-ai's ``FallbackModel``). The request's ``model`` is ignored.

    Args:
        chain: the models to try, in order.
        adapter_for: the adapter for a model.
        health: records outcomes and holds the circuit breakers.
        config: retries and deadlines.
    """

    provider = "fallback"

    def __init__(
        self,
        chain: Sequence[ModelSpec],
        *,
        adapter_for: AdapterFor,
        health: HealthTracker | None = None,
        config: FallbackConfig | None = None,
    ) -> None:
        self.chain = tuple(chain)
        self._adapter_for = adapter_for
        self._health = health
        self._config = config

    async def complete(self, request: ChatRequest) -> Completion:
        """The first model's whole answer; raises ``ProviderFallbackError`` when all fail."""
        result = await complete_with_fallback(
            self.chain,
            request,
            adapter_for=self._adapter_for,
            health=self._health,
            config=self._config,
        )
        return result.completion

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, None]:
        """The first model's streamed answer; falls back only before the first token."""
        opened = await stream_with_fallback(
            self.chain,
            request,
            adapter_for=self._adapter_for,
            health=self._health,
            config=self._config,
        )
        async with aclosing(opened.__aiter__()) as chunks:
            async for chunk in chunks:
                yield chunk
