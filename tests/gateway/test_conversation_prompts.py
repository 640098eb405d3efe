"""Conversations and chat completions started from a stored, labelled prompt template."""

from __future__ import annotations

from typing import Any

import pytest

from tests.gateway.conftest import FAKE_MODEL, Gateway

pytestmark = pytest.mark.anyio

TEMPLATE = {
    "name": "support",
    "role": "system",
    "body": "You support {{ product }}. Answer in {{ language }}.",
    "variables": [
        {"name": "product", "type": "string", "required": True},
        {"name": "language", "type": "string", "default": "English"},
    ],
}


async def push(gateway: Gateway, **changes: Any) -> dict[str, Any]:
    r = await gateway.client.post("/v1/prompts", json={**TEMPLATE, **changes})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_conversation_from_labelled_prompt_and_rollback(
    gateway: Gateway, fake_openai: Any
) -> None:
    v1 = await push(gateway)
    await push(gateway, body="You help with {{ product }} in {{ language }}, tersely.")
    label = await gateway.client.put(
        "/v1/prompts/support/labels/production", json={"version": v1["version"]}
    )
    assert label.status_code == 200, label.text

    conv = await gateway.client.post(
        "/v1/conversations",
        json={"prompt": {"name": "support:production", "variables": {"product": "Soma"}}},
    )
    assert conv.status_code == 201, conv.text
    body = conv.json()
    assert body["system_prompt"] == "You support Soma. Answer in English."
    assert body["metadata"]["prompt"] == {"name": "support", "version": v1["version"]}

    fake_openai.clear()
    await gateway.client.post(f"/v1/conversations/{body['id']}/messages", json={"content": "hi"})
    sent = fake_openai.requests.snapshot()[-1].json["messages"]
    assert sent[0] == {"role": "system", "content": "You support Soma. Answer in English."}

    latest = await gateway.client.post(
        "/v1/conversations", json={"prompt": {"name": "support", "variables": {"product": "Soma"}}}
    )
    assert latest.json()["system_prompt"] == "You help with Soma in English, tersely."


async def test_missing_variable_and_unknown_prompt_are_named(gateway: Gateway) -> None:
    await push(gateway)
    missing = await gateway.client.post("/v1/conversations", json={"prompt": {"name": "support"}})
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["loc"][:3] == ["body", "prompt", "variables"]
    unknown = await gateway.client.post("/v1/conversations", json={"prompt": {"name": "nope"}})
    assert unknown.status_code == 404
    both = await gateway.client.post(
        "/v1/conversations", json={"prompt": {"name": "support"}, "system_prompt": "x"}
    )
    assert both.status_code == 422


async def test_chat_completions_take_a_prompt(gateway: Gateway, fake_openai: Any) -> None:
    await push(gateway)
    fake_openai.clear()
    r = await gateway.client.post(
        "/v1/chat/completions",
        json={
            "model": FAKE_MODEL,
            "messages": [{"role": "user", "content": "hello"}],
            "prompt": {"name": "support", "variables": {"product": "Soma", "language": "French"}},
        },
    )
    assert r.status_code == 200, r.text
    sent = fake_openai.requests.snapshot()[-1].json["messages"]
    assert sent == [
        {"role": "system", "content": "You support Soma. Answer in French."},
        {"role": "user", "content": "hello"},
    ]
