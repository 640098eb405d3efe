"""Fallback chains against the fake vendor servers: 500s, 429s, stalls, streams cut before
and after the first token, circuit breakers, and one error that lists every attempt.

A fallback chain sends the same messages to every model, so the fakes' message triggers would
fail them all. Here each model carries its own fault instead: a small ASGI layer in front of a
real :class:`~tests.fakes.openai_server.FakeOpenAI` reads ``+fault=...`` off the requested
model id and writes the matching trigger into that request only (or, for ``cut-early``, cuts
the response body after its first event, before any text).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any

import pytest

from somaagent.errors import (
    ProviderBadRequestError,
    ProviderFallbackError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderTimeoutError,
)
from somaagent.http import aclose_client
from somaagent.llm.base import ChatRequest, Model
from somaagent.llm.fallback import (
    FallbackConfig,
    FallbackModel,
    complete_with_fallback,
    stream_with_fallback,
)
from somaagent.llm.health import HealthConfig, HealthTracker
from somaagent.llm.providers.anthropic import AnthropicModel
from somaagent.llm.providers.openai import OpenAIModel
from somaagent.llm.registry import ModelSpec
from tests.fakes._server import run_asgi
from tests.fakes.fixtures import FakeVendor
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.anyio

QUESTION = "what is the answer"
ECHO = f"Echo: {QUESTION}"
FAST = FallbackConfig(retries=1, backoff_s=0.01, max_retry_wait_s=0.5, attempt_timeout_s=0.5)

Scope = dict[str, Any]


class FaultsByModel:
    """ASGI middleware: per-request faults named in the model id (``gpt-4o-mini+fault=stall``)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.models: list[str] = []  # the model ids requested, fault suffix included

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/chat/completions":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = json.loads(b"".join(chunks))
        self.models.append(body["model"])
        model, _, fault = body["model"].partition("+fault=")
        body["model"] = model
        if fault and fault != "cut-early":
            body["messages"][-1]["content"] += f" [[{fault}]]"
        raw = json.dumps(body).encode()
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:  # later reads wait for the client to hang up, as the real ones do
                message: dict[str, Any] = await receive()
                return message
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}

        events = 0

        async def cut_after_first_event(message: dict[str, Any]) -> None:
            nonlocal events
            if message["type"] != "http.response.body":
                await send(message)
                return
            events += 1
            if events == 1:
                await send(message)
            elif events == 2:
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        await self.app(scope, replay, cut_after_first_event if fault == "cut-early" else send)


@pytest.fixture(scope="module")
def faulty() -> Iterator[tuple[str, FaultsByModel]]:
    fake = FakeOpenAI()
    app = FaultsByModel(fake.app)
    with run_asgi(app) as url:
        yield f"{url}/v1", app


def spec(name: str, provider: str = "openai", model_id: str = "gpt-4o-mini") -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "name": name,
            "provider": provider,
            "provider_model_id": model_id,
            "input_cost_per_mtok": 1.0,
            "output_cost_per_mtok": 2.0,
            "context_window": 8000,
            "max_output_tokens": 1000,
            "capabilities": ["streaming"],
            "quality": {"overall": 0.8},
            "latency": {"ttft_ms": 100, "tokens_per_s": 100},
        }
    )


def failing(name: str, fault: str) -> ModelSpec:
    return spec(name, model_id=f"gpt-4o-mini+fault={fault}")


GOOD = spec("good")


@pytest.fixture
async def adapters(
    faulty: tuple[str, FaultsByModel], fake_anthropic: FakeVendor
) -> AsyncIterator[dict[str, Model]]:
    url, app = faulty
    app.models.clear()
    yield {
        "openai": OpenAIModel(base_url=url, api_key="sk-fake-openai-key", timeout=10.0),
        "anthropic": AnthropicModel(
            api_key=fake_anthropic.api_key, base_url=fake_anthropic.base_url, timeout=10.0
        ),
    }
    await aclose_client()


def adapter_for(adapters: dict[str, Model]) -> Any:
    async def get(spec: ModelSpec) -> Model:
        return adapters[spec.provider]

    return get


def ask() -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": QUESTION}], model="ignored")


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def test_a_500_is_retried_then_the_next_model_answers(
    adapters: dict[str, Model], faulty: tuple[str, FaultsByModel]
) -> None:
    sleeps, health = Sleeps(), HealthTracker()
    result = await complete_with_fallback(
        [failing("broken", "status:500"), GOOD],
        ask(),
        adapter_for=adapter_for(adapters),
        health=health,
        config=FAST,
        sleep=sleeps,
    )
    assert result.spec.name == "good" and result.completion.content == ECHO
    assert [(a.model, a.outcome) for a in result.attempts] == [
        ("broken", "failed"),
        ("broken", "failed"),
        ("good", "ok"),
    ]
    assert result.attempts[0].status_code == 500
    assert result.attempts[0].error_type == "ProviderResponseError"
    assert faulty[1].models == ["gpt-4o-mini+fault=status:500"] * 2 + ["gpt-4o-mini"]
    assert sleeps.waits == [0.01]
    assert health.snapshot("broken").failures == 2
    assert health.snapshot("good").calls == 1


async def test_a_429_asking_for_a_long_wait_moves_on_at_once(
    adapters: dict[str, Model], faulty: tuple[str, FaultsByModel]
) -> None:
    sleeps = Sleeps()
    config = FallbackConfig(retries=3, max_retry_wait_s=0.5, attempt_timeout_s=5.0)
    result = await complete_with_fallback(
        [failing("limited", "status:429"), GOOD],
        ask(),
        adapter_for=adapter_for(adapters),
        config=config,
        sleep=sleeps,
    )
    assert result.spec.name == "good"
    assert result.attempts[0].error_type == ProviderRateLimitError.__name__
    assert len(faulty[1].models) == 2 and sleeps.waits == []  # Retry-After: 1 > 0.5


async def test_a_stalled_model_times_out_and_the_next_answers(adapters: dict[str, Model]) -> None:
    started = time.monotonic()
    result = await complete_with_fallback(
        [failing("stalled", "stall"), GOOD],
        ask(),
        adapter_for=adapter_for(adapters),
        config=FallbackConfig(retries=0, attempt_timeout_s=0.4),
    )
    assert result.spec.name == "good"
    assert result.attempts[0].error_type == ProviderTimeoutError.__name__
    assert "0.4" in (result.attempts[0].error or "")
    assert time.monotonic() - started < 5.0  # the fake stalls for 30 s


async def test_a_bad_request_is_not_retried_nor_held_against_the_model(
    adapters: dict[str, Model], faulty: tuple[str, FaultsByModel]
) -> None:
    health = HealthTracker()
    result = await complete_with_fallback(
        [failing("picky", "status:400"), GOOD],
        ask(),
        adapter_for=adapter_for(adapters),
        health=health,
        config=FAST,
    )
    assert result.spec.name == "good"
    assert result.attempts[0].error_type == ProviderBadRequestError.__name__
    assert len(faulty[1].models) == 2
    assert health.snapshot("picky").calls == 0


async def test_another_provider_can_take_over(adapters: dict[str, Model]) -> None:
    claude = spec("claude", provider="anthropic", model_id="claude-3-haiku-20240307")
    result = await complete_with_fallback(
        [failing("broken", "status:503"), claude],
        ask(),
        adapter_for=adapter_for(adapters),
        config=FallbackConfig(retries=0),
    )
    assert result.spec.name == "claude" and result.completion.provider == "anthropic"
    assert result.completion.content == ECHO


async def test_when_every_model_fails_one_error_lists_each_attempt(
    adapters: dict[str, Model],
) -> None:
    chain = [failing("a", "status:500"), failing("b", "stall"), failing("c", "garbage")]
    with pytest.raises(ProviderFallbackError) as caught:
        await complete_with_fallback(
            chain,
            ask(),
            adapter_for=adapter_for(adapters),
            config=FallbackConfig(retries=0, attempt_timeout_s=0.3),
        )
    error = caught.value
    assert [(a.model, a.outcome) for a in error.attempts] == [
        ("a", "failed"),
        ("b", "failed"),
        ("c", "failed"),
    ]
    message = str(error)
    assert "all 3 model(s) failed" in message
    for fragment in ("a (openai) failed", "HTTP", "b (openai) failed: ProviderTimeoutError", "c"):
        assert fragment in message
    assert [type(e).__name__ for e in error.errors] == [
        "ProviderResponseError",
        "ProviderTimeoutError",
        "ProviderResponseError",
    ]
    group = error.as_group()
    assert isinstance(group, ExceptionGroup) and len(group.exceptions) == 3

    from somaagent.gateway.problems import to_api_error

    api_error = to_api_error(error)
    assert api_error.status_code == 502 and "all 3 model(s) failed" in api_error.message


async def test_an_open_breaker_skips_the_model_until_its_cooldown(
    adapters: dict[str, Model], faulty: tuple[str, FaultsByModel]
) -> None:
    now = [0.0]
    health = HealthTracker(HealthConfig(failure_threshold=2, cooldown_s=30.0), clock=lambda: now[0])
    chain = [failing("flaky", "status:503"), GOOD]
    config = FallbackConfig(retries=1, backoff_s=0.0)
    first = await complete_with_fallback(
        chain, ask(), adapter_for=adapter_for(adapters), health=health, config=config
    )
    assert [a.outcome for a in first.attempts] == ["failed", "failed", "ok"]
    assert health.snapshot("flaky").state == "open"
    faulty[1].models.clear()
    second = await complete_with_fallback(
        chain, ask(), adapter_for=adapter_for(adapters), health=health, config=config
    )
    assert [(a.model, a.outcome) for a in second.attempts] == [("flaky", "skipped"), ("good", "ok")]
    assert "circuit open" in (second.attempts[0].error or "")
    assert faulty[1].models == ["gpt-4o-mini"]  # nothing reached the broken model
    now[0] = 31.0  # cooldown over: one probe goes through, fails, and the breaker re-opens
    third = await complete_with_fallback(
        chain, ask(), adapter_for=adapter_for(adapters), health=health, config=config
    )
    assert [a.outcome for a in third.attempts] == ["failed", "skipped", "ok"]
    assert health.snapshot("flaky").retry_in_s == pytest.approx(60.0)


async def test_a_stream_cut_before_its_first_token_falls_back(
    adapters: dict[str, Model], faulty: tuple[str, FaultsByModel]
) -> None:
    health = HealthTracker()
    stream = await stream_with_fallback(
        [failing("cut", "cut-early"), GOOD],
        ask(),
        adapter_for=adapter_for(adapters),
        health=health,
        config=FallbackConfig(retries=0),
    )
    assert stream.spec.name == "good"
    assert [a.outcome for a in stream.attempts] == ["failed"]  # "good" is still answering
    async with aclosing(stream.__aiter__()) as chunks:
        text = "".join([chunk.delta async for chunk in chunks])
    assert text == ECHO
    assert stream.attempts[0].error_type == ProviderResponseError.__name__
    assert [a.outcome for a in stream.attempts] == ["failed", "ok"]
    assert (health.snapshot("cut").failures, health.snapshot("good").calls) == (1, 1)


async def test_a_stream_that_stalls_before_its_first_token_falls_back(
    adapters: dict[str, Model],
) -> None:
    started = time.monotonic()
    stream = await stream_with_fallback(
        [failing("stalled", "stall"), GOOD],
        ask(),
        adapter_for=adapter_for(adapters),
        config=FallbackConfig(retries=0, attempt_timeout_s=0.4),
    )
    assert stream.spec.name == "good"
    assert "".join([c.delta async for c in stream]) == ECHO
    assert time.monotonic() - started < 5.0


async def test_a_stream_cut_after_its_first_token_is_an_error_not_a_shorter_answer(
    adapters: dict[str, Model], faulty: tuple[str, FaultsByModel]
) -> None:
    health = HealthTracker()
    stream = await stream_with_fallback(
        [failing("cut", "cut"), GOOD],
        ask(),
        adapter_for=adapter_for(adapters),
        health=health,
        config=FallbackConfig(retries=0),
    )
    assert stream.spec.name == "cut"
    deltas: list[str] = []
    with pytest.raises(ProviderResponseError):
        async for chunk in stream:
            deltas.append(chunk.delta)
    assert deltas and "".join(deltas) != ECHO
    assert faulty[1].models == ["gpt-4o-mini+fault=cut"]  # no second model once text was sent
    assert [a.outcome for a in stream.attempts] == ["failed"]
    assert health.snapshot("cut").failures == 1


async def test_a_stream_where_every_model_fails_first(adapters: dict[str, Model]) -> None:
    with pytest.raises(ProviderFallbackError, match="all 2 model"):
        await stream_with_fallback(
            [failing("a", "status:500"), failing("b", "cut-early")],
            ask(),
            adapter_for=adapter_for(adapters),
            config=FallbackConfig(retries=0),
        )


async def test_the_chain_has_an_overall_deadline(adapters: dict[str, Model]) -> None:
    started = time.monotonic()
    with pytest.raises(ProviderFallbackError) as caught:
        await complete_with_fallback(
            [failing("a", "stall"), failing("b", "stall"), GOOD],
            ask(),
            adapter_for=adapter_for(adapters),
            config=FallbackConfig(retries=0, attempt_timeout_s=5.0, total_timeout_s=0.5),
        )
    assert time.monotonic() - started < 3.0
    outcomes = [(a.model, a.outcome) for a in caught.value.attempts]
    assert outcomes[0] == ("a", "failed") and ("good", "skipped") in outcomes


async def test_an_unreachable_provider_falls_back(
    adapters: dict[str, Model], closed_port: int
) -> None:
    adapters["dead"] = OpenAIModel(base_url=f"http://127.0.0.1:{closed_port}/v1", timeout=2.0)
    dead = spec("dead", provider="dead")
    result = await complete_with_fallback(
        [dead, GOOD], ask(), adapter_for=adapter_for(adapters), config=FallbackConfig(retries=0)
    )
    assert result.spec.name == "good"
    assert result.attempts[0].error_type == "ProviderConnectionError"


async def test_the_fallback_model_is_a_model(adapters: dict[str, Model]) -> None:
    model = FallbackModel(
        [failing("broken", "status:500"), GOOD],
        adapter_for=adapter_for(adapters),
        config=FallbackConfig(retries=0),
    )
    assert (await model.complete(ask())).content == ECHO
    async with aclosing(model.stream(ask())) as chunks:
        pieces = [chunk async for chunk in chunks]
    assert "".join(c.delta for c in pieces) == ECHO
    assert pieces[-1].finish_reason == "stop"
