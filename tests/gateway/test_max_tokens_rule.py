"""One ``max_tokens`` rule for a named model on every chat path (issue 14): above what the
model can write in one answer, a 422 naming ``body.max_tokens`` on conversation sends (plain
and streamed) and on ``/v1/chat/completions``, and nothing reaches the provider."""

from __future__ import annotations

from typing import Any

import pytest

from somaagent.llm.registry import ModelRegistry
from tests.gateway.conftest import Gateway

pytestmark = pytest.mark.anyio

MODEL = "gpt-4o-mini"
LIMIT = ModelRegistry.load().get(MODEL).max_output_tokens


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_one_rule_on_every_path(gateway: Gateway, fake_openai: Any) -> None:
    client = gateway.client
    conv = (await client.post("/v1/conversations", json={})).json()["id"]
    fake_openai.clear()
    over = LIMIT + 1
    calls = [
        (f"/v1/conversations/{conv}/messages", {"content": "hi", "model": MODEL}),
        (f"/v1/conversations/{conv}/messages", {"content": "hi", "model": MODEL, "stream": True}),
        ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}),
        (
            "/v1/chat/completions",
            {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        ),
    ]
    for path, body in calls:
        for field in ("max_tokens", "max_completion_tokens"):
            if field == "max_completion_tokens" and "messages" not in body:
                continue
            response = await client.post(path, json={**body, field: over})
            assert response.status_code == 422, (path, field, response.text)
            assert response.json()["errors"][0]["loc"] == ["body", "max_tokens"]
    assert fake_openai.requests.snapshot() == []
    for path, body in calls[::2]:  # at the limit, both answer
        response = await client.post(path, json={**body, "max_tokens": LIMIT})
        assert response.status_code in (200, 201), response.text
