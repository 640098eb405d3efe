"""Outcome records for streamed routed completions, the sampled shadow evaluation, and the
report's before/after-heads periods, through the real gateway (SQLite and PostgreSQL) with the
OpenAI-wire fake as every provider, the judge included.

The fake answers ``"Echo: " + <last user message>``, and the judge's last user message holds
the request and the answer, so a prompt carrying ``[[8]]`` makes the judge's reply end in a
grade of 8 (score 7/9), and a prompt without one makes a reply with no readable grade."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select

from somaagent.errors import ProviderError
from somaagent.gateway.settings import Settings
from somaagent.llm.base import ChatMessage
from somaagent.llm.feedback import RouteFeedback
from somaagent.llm.shadow import ShadowConfig, ShadowJudge, parse_grade
from somaagent.llm.tables import RouteOutcome
from somaagent.sdk import AsyncClient
from tests.gateway.conftest import Gateway
from tests.gateway.test_route_feedback import hashed_router

pytestmark = pytest.mark.anyio

JUDGE = "gpt-4"  # the registry's dearest OpenAI model: every routed answer here is cheaper
SHADOW_ON = {"route_shadow_rate": 1.0, "route_shadow_judge": JUDGE, "route_shadow_budget_usd": 5}


def sse_events(text: str) -> list[Any]:
    return [
        json.loads(line[6:])
        for line in text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


async def complete(client: httpx.AsyncClient, prompt: str, *, stream: bool = False) -> str:
    r = await client.post(
        "/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": prompt}], "stream": stream},
    )
    assert r.status_code == 200, r.text
    if not stream:
        return str(r.json()["id"])
    events = sse_events(r.text)
    assert "error" not in events[-1] and r.text.rstrip().endswith("data: [DONE]"), r.text
    return str(events[0]["id"])


async def outcome(gateway: Gateway, tenant: str, outcome_id: str) -> RouteOutcome:
    async with gateway.state.sessions() as session:
        row = await session.get(RouteOutcome, (tenant, outcome_id))
    assert row is not None, outcome_id
    return row


def shadow_of(gateway: Gateway) -> ShadowJudge:
    feedback = gateway.state.route_feedback
    assert feedback is not None and feedback.shadow is not None
    return feedback.shadow


# -- streamed completions -------------------------------------------------------------------


async def test_a_streamed_routed_completion_can_be_rated(gateway: Gateway) -> None:
    assert gateway.state.route_feedback is not None
    assert gateway.state.route_feedback.shadow is None  # off unless the operator turns it on
    answer = await complete(gateway.client, "Say hello in French", stream=True)
    assert answer.startswith("chatcmpl")
    rated = await gateway.client.post("/v1/feedback", json={"id": answer, "rating": "up"})
    assert rated.status_code == 200, rated.text
    assert rated.json()["score"] == 1.0
    row = await outcome(gateway, "default", answer)
    assert row.cost_usd > 0 and row.reference_cost_usd >= row.cost_usd and row.features

    other = await gateway.client_for(await gateway.new_key(tenant="globex"))
    foreign = await other.post("/v1/feedback", json={"id": answer, "rating": "down"})
    assert foreign.status_code == 404
    assert foreign.headers["content-type"].startswith("application/problem+json")

    failed = await gateway.client.post(
        "/v1/chat/completions",
        json={
            "model": "auto",
            "messages": [{"role": "user", "content": "Count to ten [[stream_error]]"}],
            "stream": True,
        },
    )
    events = sse_events(failed.text)
    assert "error" in events[-1] and "[DONE]" not in failed.text  # the stream failed midway
    lost = await gateway.client.post("/v1/feedback", json={"id": events[0]["id"], "rating": "up"})
    assert lost.status_code == 404
    report = (await gateway.client.get("/v1/route/report")).json()
    assert report["routed"] == 1 and report["shadow"] is None


# -- the shadow evaluation ------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [SHADOW_ON])
async def test_the_judge_scores_cheaper_answers_and_explicit_feedback_wins(
    gateway: Gateway,
) -> None:
    shadow = shadow_of(gateway)
    judge_price = shadow.estimate_usd([{"role": "user", "content": "x"}], "y")
    assert judge_price > 0
    ids = [
        await complete(gateway.client, "What is the capital of Peru? [[8]]"),
        await complete(gateway.client, "Name a prime number [[8]]", stream=True),
    ]
    conv = (await gateway.client.post("/v1/conversations", json={})).json()["id"]
    sent = await gateway.client.post(
        f"/v1/conversations/{conv}/messages", json={"content": "Tell a joke [[8]]", "model": "auto"}
    )
    assert sent.status_code == 201, sent.text
    ids.append(sent.json()["reply"]["id"])
    await shadow.drain()
    for answer in ids:
        row = await outcome(gateway, "default", answer)
        assert row.model != JUDGE
        assert row.feedback_source == "shadow" and row.score == pytest.approx(7 / 9)
        assert row.shadow_score == pytest.approx(7 / 9)
        assert row.judge_cost_usd is not None and row.judge_cost_usd > 0
    report = (await gateway.client.get("/v1/route/report")).json()
    assert report["rated_shadow"] == 3 and report["rated_explicit"] == 0
    assert report["shadow"]["judged"] == 3 and report["shadow"]["sampled"] == 3
    assert report["judge_cost_usd"] > 0
    assert report["shadow"]["spent_today_usd"] == pytest.approx(report["judge_cost_usd"])
    assert report["periods"]["before_heads"]["shadow"] == {"rated": 3, "mean_score": 0.7778}

    # an explicit rating replaces the shadow score ...
    rated = await gateway.client.post("/v1/feedback", json={"id": ids[0], "rating": "down"})
    assert rated.status_code == 200 and rated.json()["score"] == 0.0
    row = await outcome(gateway, "default", ids[0])
    assert (row.score, row.feedback_source) == (0.0, "explicit")
    # ... and a later judgement of it never replaces the rating (its own verdict is kept apart)
    messages: list[ChatMessage] = [{"role": "user", "content": "What is the capital? [[3]]"}]
    assert await shadow.judge("default", ids[0], messages, "Lima [[3]]") == pytest.approx(2 / 9)
    row = await outcome(gateway, "default", ids[0])
    assert (row.score, row.feedback_source) == (0.0, "explicit")
    assert row.shadow_score == pytest.approx(2 / 9)
    report = (await gateway.client.get("/v1/route/report")).json()
    assert report["rated_explicit"] == 1 and report["rated_shadow"] == 2
    assert report["periods"]["before_heads"]["explicit"] == {"rated": 1, "mean_score": 0.0}

    other = await gateway.client_for(await gateway.new_key(tenant="globex"))
    assert (await other.get("/v1/route/report")).json()["shadow"]["judged"] == 0


@pytest.mark.parametrize("settings_overrides", [SHADOW_ON])
async def test_unreadable_or_failing_judges_and_the_budget(gateway: Gateway) -> None:
    shadow = shadow_of(gateway)
    client = await gateway.client_for(await gateway.new_key(tenant="thrifty"))

    # a reply with no readable grade: no score, counted, its cost still charged
    unreadable = await complete(client, "Describe the sea")
    await shadow.drain()
    row = await outcome(gateway, "thrifty", unreadable)
    assert row.score is None and row.shadow_score is None and row.feedback_source is None
    assert row.judge_cost_usd is not None and row.judge_cost_usd > 0
    assert (await shadow.status("thrifty"))["unparseable"] == 1

    # a judge whose provider fails: the user's answer is unaffected, nothing raised, counted
    real = shadow.adapter_for

    async def failing(spec: Any) -> Any:
        raise ProviderError("the judge's provider is down", provider="openai")

    shadow.adapter_for = failing
    broken = await complete(client, "Describe the sky [[9]]")
    await shadow.drain()
    shadow.adapter_for = real
    assert (await outcome(gateway, "thrifty", broken)).score is None
    assert (await shadow.status("thrifty"))["failed"] == 1

    # a budget that holds exactly one more judgement (at its worst case) of this prompt
    prompt = "Describe the moon [[9]]"
    worst = shadow.estimate_usd([{"role": "user", "content": prompt}], f"Echo: {prompt}")
    spent = await shadow.spent_today("thrifty")
    shadow.config = dataclasses.replace(shadow.config, budget_usd=spent + worst * 1.01)
    first, second = await complete(client, prompt), await complete(client, prompt)
    await shadow.drain()
    assert (await outcome(gateway, "thrifty", first)).score == pytest.approx(8 / 9)
    assert (await outcome(gateway, "thrifty", second)).score is None
    status = await shadow.status("thrifty")
    assert status["over_budget"] == 1 and status["judged"] == 1
    assert status["spent_today_usd"] <= shadow.config.budget_usd
    await complete(client, prompt)
    await shadow.drain()
    assert (await shadow.status("thrifty"))["over_budget"] == 2  # exhausted: no more judging


@pytest.mark.parametrize("settings_overrides", [SHADOW_ON])
async def test_the_counts_come_from_the_database(gateway: Gateway) -> None:
    """Another gateway process (or this one after a restart) reports the same counts, and a
    judgement still running is counted as in flight."""
    shadow = shadow_of(gateway)
    client = await gateway.client_for(await gateway.new_key(tenant="durable"))
    await complete(client, "Describe the river [[6]]")
    await shadow.drain()
    release = asyncio.Event()
    real = shadow.adapter_for

    async def slow(spec: Any) -> Any:
        await release.wait()
        return await real(spec)

    shadow.adapter_for = slow
    await complete(client, "Describe the lake [[4]]")
    elsewhere = ShadowJudge(
        gateway.state.sessions, shadow.registry, real, dataclasses.replace(shadow.config)
    )
    for _ in range(100):  # until the background task has marked its outcome
        if (await elsewhere.status("durable"))["in_flight"] == 1:
            break
        await asyncio.sleep(0.01)
    status = await elsewhere.status("durable")
    assert (status["sampled"], status["judged"], status["in_flight"]) == (2, 1, 1)
    release.set()
    await shadow.drain()
    shadow.adapter_for = real
    status = await elsewhere.status("durable")
    assert (status["sampled"], status["judged"], status["in_flight"]) == (2, 2, 0)
    assert (await elsewhere.status("default"))["sampled"] == 0


@pytest.mark.parametrize("settings_overrides", [SHADOW_ON])
async def test_a_judgement_that_ends_during_the_budget_check_is_counted(gateway: Gateway) -> None:
    """The budget check reads the day's spend, then the reservations in flight: a judgement
    that commits its cost and drops its reservation between the two must still count."""
    shadow = shadow_of(gateway)
    client = await gateway.client_for(await gateway.new_key(tenant="racy"))
    prompt = "Describe the hill [[9]]"
    worst = shadow.estimate_usd([{"role": "user", "content": prompt}], f"Echo: {prompt}")
    spent = await shadow.spent_today("racy")
    shadow.config = dataclasses.replace(shadow.config, budget_usd=spent + worst * 1.01)
    release = asyncio.Event()
    real_adapter, real_spent = shadow.adapter_for, shadow.spent_today

    async def slow(spec: Any) -> Any:
        await release.wait()
        return await real_adapter(spec)

    shadow.adapter_for = slow
    first = await complete(client, prompt)
    for _ in range(200):  # until the first judgement holds its reservation
        if shadow._reserved.get("racy"):
            break
        await asyncio.sleep(0.01)
    assert shadow._reserved.get("racy")

    async def spend_read_as_the_first_ends(tenant: str) -> float:
        value = await real_spent(tenant)  # read before the first judgement's cost lands
        release.set()
        while shadow._reserved.get("racy"):  # it commits, then drops its reservation
            await asyncio.sleep(0.01)
        return value

    shadow.spent_today = spend_read_as_the_first_ends  # type: ignore[method-assign]
    second = await shadow.judge(
        "racy", "no-such-outcome", [{"role": "user", "content": prompt}], f"Echo: {prompt}"
    )
    shadow.spent_today = real_spent  # type: ignore[method-assign]
    shadow.adapter_for = real_adapter
    await shadow.drain()
    assert (await outcome(gateway, "racy", first)).score == pytest.approx(8 / 9)
    assert second is None  # over budget: the first judgement's spend was counted
    assert await shadow.spent_today("racy") <= shadow.config.budget_usd


def test_grades_are_read_from_the_judges_last_bracketed_number() -> None:
    assert parse_grade("Good. Rating: [[10]]") == 1.0
    assert parse_grade("[[2]] ... on reflection [[ 1 ]]") == 0.0
    assert parse_grade("Rating: [[5.5]]") == pytest.approx(0.5)
    for bad in ("Rating: 7", "[[rating]]", "[[0]]", "[[11]]", ""):
        assert parse_grade(bad) is None


# -- training on shadow scores, and the before/after report --------------------------------


async def test_training_on_shadow_scores_and_the_report_before_and_after(
    gateway: Gateway,
) -> None:
    """A separate service (hashed embeddings, a judge through the gateway's own provider pool)
    on the gateway's database: the judge alone scores 80 answers, training on them promotes
    tenant heads, and the gateway's report, read with the SDK, splits at their promotion."""
    router = hashed_router(gateway)
    shadow = ShadowJudge(
        gateway.state.sessions,
        router.registry,
        gateway.state.pool.adapter,
        ShadowConfig(rate=1.0, judge=JUDGE, budget_usd=5.0),
    )
    service = RouteFeedback(gateway.state.sessions, router, shadow)
    router.quality.tenant_heads = service.heads_for
    spec = router.registry.get("mixtral-8x7b")
    key = await gateway.new_key(tenant="acme")

    async def answer(i: int, cost: float, text: str) -> str:
        messages: Sequence[ChatMessage] = [{"role": "user", "content": text}]
        outcome_id = f"cmpl-acme-{i}"
        await service.record(
            "acme",
            outcome_id,
            router.decide(list(messages)),
            spec,
            prompt_tokens=20,
            completion_tokens=50,
            cost_usd=cost,
            messages=messages,
            answer=f"Echo: {text}",
        )
        return outcome_id

    for i in range(80):  # the judge fails the maths answers and passes the poems
        maths = i % 2 == 0
        await answer(
            i,
            0.0002,
            f"Compute {i} plus {i * 3} times 7 [[1]]"
            if maths
            else f"Write a poem number {i} [[10]]",
        )
    await shadow.drain()
    result = await service.train("acme")
    assert result["rated"] == 80 and result["promoted"], result
    after = [await answer(100 + i, 0.0001, f"Write a poem number {i} [[10]]") for i in range(4)]
    await shadow.drain()

    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway.app))
    async with AsyncClient(api_key=key, base_url="http://gateway", http_client=http) as client:
        rated = await client.feedback(after[0], "down")
        assert rated.score == 0.0
        report = await client.route_report()
    await http.aclose()
    periods = report.periods
    assert periods.split_at is not None and report.heads is not None
    before_p, after_p = periods.before_heads, periods.after_heads
    assert (before_p.routed, after_p.routed) == (80, 4)
    assert before_p.shadow.rated == 80 and before_p.explicit.rated == 0
    assert before_p.shadow.mean_score == pytest.approx(0.5)
    assert (after_p.explicit.rated, after_p.shadow.rated) == (1, 3)
    assert after_p.mean_score == pytest.approx(0.75)
    assert after_p.cost_per_answer_usd == pytest.approx(0.0001)
    assert before_p.cost_per_answer_usd == pytest.approx(0.0002)
    assert periods.comparison is not None
    assert periods.comparison["cost_per_answer_change"] == pytest.approx(-0.5)
    assert periods.comparison["mean_score_change"] == pytest.approx(0.25)
    assert report.rated_shadow == 83 and report.rated_explicit == 1
    async with gateway.state.sessions() as session:
        sources = set(
            (
                await session.scalars(
                    select(RouteOutcome.feedback_source).where(RouteOutcome.tenant_id == "acme")
                )
            ).all()
        )
    assert sources == {"shadow", "explicit"}


@pytest.mark.parametrize(
    "settings_overrides", [{**SHADOW_ON, "route_shadow_judge": "no-such-model"}]
)
async def test_a_shadow_rate_needs_a_judge_the_registry_knows(gateway: Gateway) -> None:
    with pytest.raises(PydanticValidationError, match="SOMA_ROUTE_SHADOW_JUDGE"):
        Settings(route_shadow_rate=0.1)
    # an unknown judge: the gateway runs, judges nothing, and says so in the report
    await complete(gateway.client, "What is 2 + 2? [[9]]")
    await shadow_of(gateway).drain()
    report = (await gateway.client.get("/v1/route/report")).json()
    assert report["rated"] == 0 and report["shadow"]["sampled"] == 0
    assert report["shadow"]["judge_in_registry"] is False
