"""Conversations and messages through the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tests.gateway.conftest import FAKE_MODEL, Gateway

pytestmark = pytest.mark.anyio


async def test_create_get_list_delete(gateway: Gateway) -> None:
    c = gateway.client
    created = await c.post("/v1/conversations", json={"title": "first", "metadata": {"k": 1}})
    assert created.status_code == 201
    conv = created.json()
    assert conv["id"].startswith("conv_")
    assert conv["metadata"] == {"k": 1}

    got = await c.get(f"/v1/conversations/{conv['id']}")
    assert got.status_code == 200
    assert got.json()["title"] == "first"

    listed = await c.get("/v1/conversations")
    assert [x["id"] for x in listed.json()["data"]] == [conv["id"]]

    deleted = await c.delete(f"/v1/conversations/{conv['id']}")
    assert deleted.status_code == 204
    missing = await c.get(f"/v1/conversations/{conv['id']}")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert missing.json()["type"] == "urn:somaagent:problem:not-found"


async def test_list_paginates_newest_first_with_cursor(gateway: Gateway) -> None:
    ids = []
    for i in range(5):
        r = await gateway.client.post("/v1/conversations", json={"title": f"c{i}"})
        ids.append(r.json()["id"])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await gateway.client.get("/v1/conversations", params=params)).json()
        seen += [x["id"] for x in page["data"]]
        pages += 1
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert pages == 3
    assert seen == list(reversed(ids))


async def test_bad_cursor_is_422_naming_cursor(gateway: Gateway) -> None:
    r = await gateway.client.get("/v1/conversations", params={"cursor": "!!not-a-cursor"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["query", "cursor"]


async def test_send_message_stores_reply_with_usage_cost_latency(gateway: Gateway) -> None:
    conv = (
        await gateway.client.post("/v1/conversations", json={"system_prompt": "Be brief."})
    ).json()
    r = await gateway.client.post(
        f"/v1/conversations/{conv['id']}/messages", json={"content": "hello there"}
    )
    assert r.status_code == 201, r.text
    exchange = r.json()
    assert exchange["message"]["role"] == "user"
    assert exchange["message"]["content"] == "hello there"
    reply = exchange["reply"]
    assert reply["role"] == "assistant"
    assert reply["content"] == "Echo: hello there"
    assert reply["model"] == FAKE_MODEL
    assert reply["provider"] == "openai"
    assert reply["usage"]["prompt_tokens"] > 0
    assert reply["usage"]["completion_tokens"] > 0
    assert reply["cost_usd"] > 0
    assert reply["latency_ms"] > 0

    listed = (await gateway.client.get(f"/v1/conversations/{conv['id']}/messages")).json()
    assert [m["role"] for m in listed["data"]] == ["user", "assistant"]
    assert listed["data"][1]["cost_usd"] == reply["cost_usd"]


async def test_a_conversation_shows_the_model_of_its_latest_reply(gateway: Gateway) -> None:
    c = gateway.client
    talked = (await c.post("/v1/conversations", json={"title": "talked"})).json()
    quiet = (await c.post("/v1/conversations", json={"title": "quiet"})).json()
    assert talked["last_model"] is None
    r = await c.post(f"/v1/conversations/{talked['id']}/messages", json={"content": "hi"})
    assert r.status_code == 201, r.text

    assert (await c.get(f"/v1/conversations/{talked['id']}")).json()["last_model"] == FAKE_MODEL
    listed = {x["id"]: x for x in (await c.get("/v1/conversations")).json()["data"]}
    assert listed[talked["id"]]["last_model"] == FAKE_MODEL
    assert listed[quiet["id"]]["last_model"] is None


async def test_history_and_system_prompt_reach_the_model(gateway: Gateway, fake_openai) -> None:  # type: ignore[no-untyped-def]
    conv = (
        await gateway.client.post("/v1/conversations", json={"system_prompt": "Be brief."})
    ).json()
    url = f"/v1/conversations/{conv['id']}/messages"
    await gateway.client.post(url, json={"content": "one"})
    fake_openai.clear()
    await gateway.client.post(url, json={"content": "two"})
    sent = fake_openai.requests.snapshot()[-1].json["messages"]
    assert sent == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "Echo: one"},
        {"role": "user", "content": "two"},
    ]


async def test_messages_paginate_oldest_first(gateway: Gateway) -> None:
    conv = (await gateway.client.post("/v1/conversations", json={})).json()
    url = f"/v1/conversations/{conv['id']}/messages"
    for i in range(3):
        await gateway.client.post(url, json={"content": f"m{i}"})
    first = (await gateway.client.get(url, params={"limit": 4})).json()
    assert first["has_more"] is True
    rest = (
        await gateway.client.get(url, params={"limit": 4, "cursor": first["next_cursor"]})
    ).json()
    contents = [m["content"] for m in first["data"] + rest["data"]]
    assert contents == ["m0", "Echo: m0", "m1", "Echo: m1", "m2", "Echo: m2"]
    assert rest["has_more"] is False


async def test_provider_failure_keeps_user_message_and_maps_status(gateway: Gateway) -> None:
    conv = (await gateway.client.post("/v1/conversations", json={})).json()
    url = f"/v1/conversations/{conv['id']}/messages"
    r = await gateway.client.post(url, json={"content": "boom [[status:500]]"})
    assert r.status_code in (502, 503)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "Traceback" not in r.text
    r429 = await gateway.client.post(url, json={"content": "slow down [[status:429]]"})
    assert r429.status_code == 503
    assert r429.headers["retry-after"] == "1"
    garbage = await gateway.client.post(url, json={"content": "what [[garbage]]"})
    assert garbage.status_code == 502
    stored = (await gateway.client.get(url)).json()["data"]
    assert [m["role"] for m in stored] == ["user", "user", "user"]


async def test_stalled_provider_is_504(gateway: Gateway) -> None:
    gateway.state.settings.provider_timeout_s = 0.5
    gateway.state.pool._adapters.clear()
    conv = (await gateway.client.post("/v1/conversations", json={})).json()
    r = await gateway.client.post(
        f"/v1/conversations/{conv['id']}/messages", json={"content": "wait [[stall]]"}
    )
    assert r.status_code == 504
    assert r.json()["type"] == "urn:somaagent:problem:upstream-timeout"


async def test_unknown_model_is_422_naming_model_and_stores_nothing(gateway: Gateway) -> None:
    conv = (await gateway.client.post("/v1/conversations", json={})).json()
    url = f"/v1/conversations/{conv['id']}/messages"
    r = await gateway.client.post(url, json={"content": "hi", "model": "no-such-model-xyz"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "model"]
    assert (await gateway.client.get(url)).json()["data"] == []
