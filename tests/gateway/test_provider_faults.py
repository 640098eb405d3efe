"""Provider faults through every chat path (issue 14).

Runs on SQLite and PostgreSQL (the gateway fixtures' ``database_url``), since a failed turn
writes to the database too (the user message, the idempotency record, the usage ledger).

An upstream whose faults are set per model (:mod:`tests.gateway._fault_upstream`: 429 with
Retry-After, 500, stall, mid-stream cut, invalid JSON, flapping, slow first token) answers for
``gpt-4o-mini``; ``gpt-4o`` stays healthy. Every chat path is driven against each fault:
conversations and ``/v1/chat/completions``, plain and streamed, with the faulty model named and
with ``auto`` plus a policy whose explicit fallback is the healthy model. Each request must
either succeed with the whole answer or end in a typed error (a problem+json status, or an
error event once a stream has sent text): never a truncated success. A streamed request that
fails before its first token gets a real error status, and the metrics agree with the upstream:
model calls by model, and HTTP statuses (a stream that failed is not counted as a 200).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from somaagent.llm.registry import ModelRegistry
from tests.fakes._server import run_asgi
from tests.gateway._fault_upstream import API_KEY, FAULTS, FaultUpstream
from tests.gateway.conftest import Gateway

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

FAULTY, HEALTHY = "gpt-4o-mini", "gpt-4o"
POLICY = {"models": [FAULTY], "fallbacks": [HEALTHY]}
BEFORE_FIRST_TOKEN = {"429", "500", "stall"}
# what the upstream sees: the provider's model ids
WIRE = {name: ModelRegistry.load().get(name).provider_model_id for name in (FAULTY, HEALTHY)}


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[FaultUpstream, str]]:
    fake = FaultUpstream()
    with run_asgi(fake.app) as url:
        yield fake, f"{url}/v1"


@pytest.fixture
def settings_overrides(upstream: tuple[FaultUpstream, str]) -> dict[str, Any]:
    return {
        "openai_base_url": upstream[1],
        "openai_api_key": API_KEY,
        "provider_timeout_s": 1.0,
    }


@dataclass
class Outcome:
    path: str
    status: int
    ok: bool  # the whole answer arrived
    typed_error: bool  # a problem+json status, or an error event/object in a stream
    detail: str


def _problem(response: httpx.Response) -> bool:
    if response.status_code < 400:
        return False
    body = response.json()
    return response.headers["content-type"].startswith("application/problem+json") and bool(
        body.get("type")
    )


async def conversation_plain(
    client: httpx.AsyncClient, text: str, extra: dict[str, Any]
) -> Outcome:
    conv = (await client.post("/v1/conversations", json={})).json()
    response = await client.post(
        f"/v1/conversations/{conv['id']}/messages", json={"content": text, **extra}
    )
    ok = response.status_code == 201 and response.json()["reply"]["content"] == f"Echo: {text}"
    return Outcome("conv", response.status_code, ok, _problem(response), response.text[:300])


async def conversation_stream(
    client: httpx.AsyncClient, text: str, extra: dict[str, Any]
) -> Outcome:
    conv = (await client.post("/v1/conversations", json={})).json()
    body = {"content": text, "stream": True, **extra}
    response = await client.post(f"/v1/conversations/{conv['id']}/messages", json=body)
    if response.status_code != 200:
        return Outcome(
            "conv-stream", response.status_code, False, _problem(response), response.text
        )
    events = [block for block in response.text.split("\n\n") if block.strip()]
    names = [
        line.removeprefix("event: ")
        for e in events
        for line in e.splitlines()
        if line.startswith("event: ")
    ]
    completed = [e for e in events if e.startswith("event: message.completed")]
    ok = bool(completed) and (
        json.loads(completed[-1].split("data: ", 1)[1])["message"]["content"] == f"Echo: {text}"
    )
    typed = names[-1:] == ["error"] and not completed
    return Outcome("conv-stream", 200, ok, typed, response.text[-300:])


async def openai_plain(client: httpx.AsyncClient, text: str, extra: dict[str, Any]) -> Outcome:
    body = {"messages": [{"role": "user", "content": text}], **extra}
    response = await client.post("/v1/chat/completions", json=body)
    ok = (
        response.status_code == 200
        and response.json()["choices"][0]["message"]["content"] == f"Echo: {text}"
    )
    return Outcome("openai", response.status_code, ok, _problem(response), response.text[:300])


async def openai_stream(client: httpx.AsyncClient, text: str, extra: dict[str, Any]) -> Outcome:
    body = {"messages": [{"role": "user", "content": text}], "stream": True, **extra}
    response = await client.post("/v1/chat/completions", json=body)
    if response.status_code != 200:
        return Outcome(
            "openai-stream", response.status_code, False, _problem(response), response.text
        )
    data = [
        line.removeprefix("data: ")
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]
    done = data[-1:] == ["[DONE]"]
    payloads = [json.loads(d) for d in data if d != "[DONE]"]
    content = "".join(
        c["delta"].get("content") or "" for p in payloads for c in p.get("choices", [])
    )
    errored = any("error" in p for p in payloads)
    ok = done and not errored and content == f"Echo: {text}"
    return Outcome("openai-stream", 200, ok, errored and not done, response.text[-300:])


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


@pytest.mark.parametrize("fault", [f for f in FAULTS if f != "ok"])
async def test_every_chat_path_under_a_provider_fault(
    gateway: Gateway, upstream: tuple[FaultUpstream, str], fault: str
) -> None:
    fake = upstream[0]
    fake.reset(**{WIRE[FAULTY]: fault})
    client = gateway.client
    named: dict[str, Any] = {"model": FAULTY}
    routed: dict[str, Any] = {"model": "auto", "policy": POLICY}
    runs = []
    for path in (conversation_plain, conversation_stream, openai_plain, openai_stream):
        for kind, extra in (("named", named), ("routed", routed)):
            runs.append((path.__name__, kind, path(client, f"hello {path.__name__} {kind}", extra)))
    outcomes = await asyncio.gather(*(run for _, _, run in runs))

    for (name, kind, _), outcome in zip(runs, outcomes, strict=True):
        label = f"{fault} {name} {kind}: {outcome}"
        assert outcome.ok or outcome.typed_error, label  # never a truncated success
        assert outcome.status < 500 or outcome.typed_error, label
        if kind == "routed":
            streamed = name.endswith("stream")
            # a cut after text was sent cannot fall back: an error event is the honest end
            if not (streamed and fault == "cut"):
                assert outcome.ok, f"the explicit fallback did not answer: {label}"
        if fault in BEFORE_FIRST_TOKEN and not outcome.ok:
            # a failure before the first token is a real error status, even when streamed
            assert outcome.status >= 400, label

    metrics = (await client.get("/metrics")).text
    calls: Counter[str] = Counter()
    for labels, value in samples(metrics, "gen_ai_client_operation_duration_seconds_count"):
        calls[labels["gen_ai_request_model"]] += int(value)
    for model in (FAULTY, HEALTHY):
        assert calls[model] == fake.calls[WIRE[model]], (model, dict(calls), dict(fake.calls))

    streamed_ok = sum(
        1
        for (name, _, _), o in zip(runs, outcomes, strict=True)
        if name.endswith("stream") and o.ok
    )
    counted_200 = sum(
        value
        for labels, value in samples(metrics, "http_server_request_duration_seconds_count")
        if labels["http_response_status_code"] == "200"
        and labels["http_route"]
        in ("/v1/chat/completions", "/v1/conversations/{conversation_id}/messages")
        and labels["http_request_method"] == "POST"
    )
    plain_openai_ok = sum(
        1 for (name, _, _), o in zip(runs, outcomes, strict=True) if name == "openai_plain" and o.ok
    )
    assert counted_200 == streamed_ok + plain_openai_ok, metrics
