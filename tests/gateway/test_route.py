"""``POST /v1/route`` through the real app: explanations, and 4xx problems that name the field."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from somaagent.gateway.app import create_app
from somaagent.gateway.routes import route
from somaagent.llm.router import Router
from tests.gateway.conftest import make_settings

pytestmark = pytest.mark.anyio

GSM = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in "
    "May. How many clips did Natalia sell altogether in April and May?"
)


@pytest.fixture
async def client(tmp_path: Path, fake_openai: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway on SQLite with only OpenAI (the fake) configured, and ``/v1/route`` mounted."""
    admin: list[str] = []
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'soma.db'}", fake_openai)
    app = create_app(settings, on_admin_key=admin.append)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://gateway",
            headers={"Authorization": f"Bearer {admin[0]}"},
        ) as c,
    ):
        c.app = app  # type: ignore[attr-defined]
        yield c


async def test_a_decision_is_explained_without_calling_a_model(
    client: httpx.AsyncClient, fake_openai: Any
) -> None:
    fake_openai.clear()
    response = await client.post("/v1/route", json={"prompt": GSM})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["provider"] in ("openai", "local")
    assert body["reason"] and body["model"] in body["reason"]
    assert body["complexity"]["category"] == "math"
    assert 0.0 <= body["complexity"]["difficulty"] <= 1.0
    by_model = {c["model"]: c for c in body["candidates"]}
    chosen = by_model[body["model"]]
    assert chosen["chosen"] and chosen["eligible"]
    assert body["estimated_cost_usd"] == chosen["estimated_cost_usd"] > 0
    assert by_model["claude-haiku-4-5"]["excluded_by"] == "available"
    assert "not configured" in by_model["claude-haiku-4-5"]["why"]
    for candidate in body["candidates"]:
        assert {"predicted_quality", "estimated_cost_usd", "estimated_latency_ms"} <= set(candidate)
    assert fake_openai.requests.snapshot() == []  # no model was called


async def test_a_conversation_and_a_policy(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/route",
        json={
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Write a Python function that reverses a list."},
            ],
            "policy": {"min_quality": 0.8, "capabilities": ["json_mode"], "max_cost_usd": 0.05},
            "max_tokens": 300,
            "stream": True,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["complexity"]["category"] == "coding"
    assert body["predicted_quality"] >= 0.8
    assert body["policy"]["min_quality"] == 0.8
    assert set(body["complexity"]["capabilities"]) == {"json_mode", "streaming"}
    chosen = next(c for c in body["candidates"] if c["chosen"])
    assert chosen["expected_output_tokens"] <= 300


async def test_unknown_fields_are_a_422_naming_them(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/route", json={"prompt": "hi", "policy": {"max_cost": 1}})
    assert response.status_code == 422
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert ["body", "policy", "max_cost"] in [e["loc"] for e in problem["errors"]]
    response = await client.post("/v1/route", json={"prompt": "hi", "temperature": 1})
    assert response.status_code == 422 and "temperature" in response.json()["detail"]
    response = await client.post(
        "/v1/route", json={"prompt": "hi", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code == 422 and "exactly one" in response.text


async def test_an_impossible_policy_is_a_422_naming_the_constraint(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/route",
        json={"prompt": GSM, "policy": {"providers": ["anthropic"], "min_quality": 0.5}},
    )
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == "urn:somaagent:problem:impossible-policy"
    assert "providers" in problem["detail"]
    response = await client.post(
        "/v1/route", json={"prompt": GSM, "policy": {"min_quality": 0.99999}}
    )
    assert response.status_code == 422 and "min_quality" in response.json()["detail"]
    response = await client.post(
        "/v1/route", json={"prompt": GSM, "policy": {"models": ["gpt-4o-mnii"]}}
    )
    assert response.status_code == 422 and "gpt-4o-mini" in response.json()["detail"]


async def test_a_prompt_longer_than_every_context_window_is_a_422(
    client: httpx.AsyncClient,
) -> None:
    long_prompt = "the weather in paris is lovely today " * 2500  # ~17,500 tokens
    response = await client.post(
        "/v1/route",
        json={"prompt": long_prompt, "policy": {"models": ["gpt-4", "gpt-3.5-turbo"]}},
    )
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == "urn:somaagent:problem:prompt-too-long"
    assert "gpt-3.5-turbo, 16385 tokens" in problem["detail"]
    assert problem["errors"][0]["loc"] == ["body", "messages"]


async def test_the_route_needs_a_key(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/route", json={"prompt": "hi"}, headers={"Authorization": ""})
    assert response.status_code == 401


async def test_one_router_per_gateway_shared_with_chat(client: httpx.AsyncClient) -> None:
    state = client.app.state.gateway  # type: ignore[attr-defined]
    assert route.get_router(state) is state.turns.router
    custom = Router(state.pool.registry, fallback_chain=["gpt-4o"])
    state.router = state.turns.router = custom
    body = (await client.post("/v1/route", json={"prompt": "hello there"})).json()
    assert body["fallbacks"] in (["gpt-4o"], [])
