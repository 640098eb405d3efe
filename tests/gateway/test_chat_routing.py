"""model "auto" and policies on a conversation send: the router's choice, its reason and
cost in headers and body, fallbacks that fire, and monthly budgets that block."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import Gateway

pytestmark = pytest.mark.anyio


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


async def conversation(gateway: Gateway) -> str:
    r = await gateway.client.post("/v1/conversations", json={})
    return str(r.json()["id"])


async def test_auto_routes_and_explains(gateway: Gateway) -> None:
    conv = await conversation(gateway)
    r = await gateway.client.post(
        f"/v1/conversations/{conv}/messages", json={"content": "hello there", "model": "auto"}
    )
    assert r.status_code == 201, r.text
    reply = r.json()["reply"]
    assert r.headers["x-soma-model"] == reply["model"]
    assert r.headers["x-soma-route-reason"]
    assert float(r.headers["x-soma-cost-usd"]) == pytest.approx(reply["cost_usd"])
    assert reply["route"]["reason"] == r.headers["x-soma-route-reason"]
    assert reply["route"]["attempts"][-1].startswith(reply["model"])
    stored = (await gateway.client.get(f"/v1/conversations/{conv}/messages")).json()["data"]
    assert stored[-1]["route"]["model"] == reply["model"]


async def test_policy_fields_are_checked(gateway: Gateway) -> None:
    conv = await conversation(gateway)
    url = f"/v1/conversations/{conv}/messages"
    unknown = await gateway.client.post(url, json={"content": "x", "policy": {"max_cost": 1}})
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["loc"][:2] == ["body", "policy"]
    named = await gateway.client.post(
        url, json={"content": "x", "model": "gpt-4o", "policy": {"max_cost_usd": 1}}
    )
    assert named.status_code == 422
    impossible = await gateway.client.post(
        url, json={"content": "x", "model": "auto", "policy": {"min_quality": 0.999}}
    )
    assert impossible.status_code == 422
    assert (await gateway.client.get(url)).json()["data"] == []


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.node.name.startswith("test_fallback"):
        fake_anthropic = request.getfixturevalue("fake_anthropic")
        return {
            "openai_base_url": closed_port_url(),
            "anthropic_api_key": fake_anthropic.api_key,
            "anthropic_base_url": fake_anthropic.base_url,
        }
    return {}


async def test_fallback_fires_when_the_chosen_provider_is_down(gateway: Gateway) -> None:
    conv = await conversation(gateway)
    r = await gateway.client.post(
        f"/v1/conversations/{conv}/messages",
        json={
            "content": "hello",
            "model": "auto",
            "policy": {"providers": ["openai", "anthropic"], "fallbacks": ["claude-haiku-4-5"]},
        },
    )
    assert r.status_code == 201, r.text
    reply = r.json()["reply"]
    assert reply["provider"] == "anthropic"
    assert reply["content"] == "Echo: hello"
    attempts = reply["route"]["attempts"]
    assert any("failed" in a and "ProviderConnectionError" in a for a in attempts)
    assert attempts[-1].startswith("claude-haiku-4-5")


async def test_monthly_budget_blocks_with_clear_error(gateway: Gateway, tmp_path: Path) -> None:
    from sqlalchemy import update

    from somaagent.accounts.tables import ApiKey

    key = await gateway.new_key(name="budgeted")
    client = await gateway.client_for(key)
    me = (await client.get("/v1/me")).json()
    async with gateway.state.sessions() as session:
        await session.execute(
            update(ApiKey).where(ApiKey.id == me["key_id"]).values(monthly_budget_usd=0.0000001)
        )
        await session.commit()
    conv = (await client.post("/v1/conversations", json={})).json()["id"]
    url = f"/v1/conversations/{conv}/messages"
    first = await client.post(url, json={"content": "spend a little"})
    assert first.status_code == 201
    await gateway.state.usage.flush()
    gateway.state.usage.forget(me["key_id"])
    blocked = await client.post(url, json={"content": "and more"})
    assert blocked.status_code == 429
    body = blocked.json()
    assert body["type"] == "urn:somaagent:problem:budget-exceeded"
    assert "monthly budget" in body["detail"]
    assert int(blocked.headers["retry-after"]) > 0
    me_after = (await client.get("/v1/me")).json()
    assert me_after["monthly_budget_usd"] == 0.0000001
    assert me_after["spent_this_month_usd"] == first.json()["reply"]["cost_usd"]
    other = await gateway.client.post(
        url.replace(conv, await conversation(gateway)), json={"content": "x"}
    )
    assert other.status_code == 201
