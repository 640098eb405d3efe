"""50 concurrent sends to one conversation, on SQLite and PostgreSQL (issue 14, finding 1):
every accepted message is stored once with one reply after it, contention is a wait (or a
clear 409/429), never a 5xx, and the usage ledger agrees with the stored replies."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from somaagent.accounts.tables import UsageRecord
from tests.gateway.conftest import Gateway

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SENDS = 50


async def all_messages(client: httpx.AsyncClient, conv_id: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = await client.get(f"/v1/conversations/{conv_id}/messages", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        messages.extend(body["data"])
        if not body["has_more"]:
            return messages
        cursor = body["next_cursor"]


async def test_concurrent_sends_to_one_conversation(gateway: Gateway) -> None:
    client = gateway.client
    conv = (await client.post("/v1/conversations", json={})).json()
    url = f"/v1/conversations/{conv['id']}/messages"

    async def send(i: int) -> httpx.Response:
        return await client.post(url, json={"content": f"message {i}"})

    responses = await asyncio.gather(*(send(i) for i in range(SENDS)))
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 409, 429}, {r.status_code: r.text for r in responses}
    accepted = {r.json()["message"]["content"]: r.json() for r in responses if r.status_code == 201}
    assert len(accepted) >= SENDS // 2, statuses  # waits, mostly: not a wall of refusals

    messages = await all_messages(client, conv["id"])
    users = [m for m in messages if m["role"] == "user"]
    replies = [m for m in messages if m["role"] == "assistant"]
    assert sorted(m["content"] for m in users) == sorted(accepted)  # each once, none lost
    assert len({m["id"] for m in messages}) == len(messages)
    # each reply stored once, and the replies are the answers the clients got
    assert sorted(m["id"] for m in replies) == sorted(a["reply"]["id"] for a in accepted.values())
    for exchange in accepted.values():
        assert exchange["reply"]["content"] == "Echo: " + exchange["message"]["content"]

    # the usage ledger charged exactly the stored replies
    await gateway.state.usage.flush()
    async with gateway.state.sessions() as session:
        charged = (
            await session.execute(
                select(
                    func.sum(UsageRecord.requests),
                    func.sum(UsageRecord.prompt_tokens),
                    func.sum(UsageRecord.completion_tokens),
                ).where(UsageRecord.endpoint == "conversations")
            )
        ).one()
    assert charged[0] == len(replies)
    assert charged[1] == sum(m["usage"]["prompt_tokens"] for m in replies)
    assert charged[2] == sum(m["usage"]["completion_tokens"] for m in replies)
