"""Crash test of ``batch_chat``: a real gateway process, killed with ``kill -9`` while its
sliding pool has items in flight against a slowed OpenAI-wire fake (served by this test, so it
outlives the gateway), then started again on the same data directory. The run ends
``succeeded`` with exactly one result per item, and the fake saw every item that had finished
before the kill exactly once (only items cut short may be sent again)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.fakes._server import run_asgi
from tests.fakes.openai_server import FakeOpenAI
from tests.workflows.test_crash import client, events, gateway, wait_status

pytestmark = pytest.mark.slow

ITEMS = 12
UPSTREAM_DELAY_S = 0.25


class SlowUpstream:
    """The fake, answering each chat completion after a pause (so the kill lands mid-pool)."""

    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/chat/completions"):
            await asyncio.sleep(UPSTREAM_DELAY_S)
        await self.fake.app(scope, receive, send)


def prompt(i: int) -> str:
    return f"batch item number {i}"


def test_kill_9_mid_batch_chat_then_restart_sends_no_finished_item_again(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    data = tmp_path / "data"
    url = f"sqlite+aiosqlite:///{data / 'soma.db'}"
    body = {
        "id": "batch-crash",
        "input": {"items": [{"prompt": prompt(i)} for i in range(ITEMS)], "concurrency": 2},
    }
    with run_asgi(SlowUpstream(fake)) as upstream:
        env = {
            "SOMA_OPENAI_BASE_URL": upstream + "/v1",
            "SOMA_OPENAI_API_KEY": fake.api_key,
            "SOMA_DEFAULT_MODEL": "gpt-4o-mini",
        }
        with gateway(data, url, None, **env) as first:
            key = (data / "admin.key").read_text()
            with client(first, key) as http:
                response = http.post("/v1/workflows/batch_chat/runs", json=body)
                assert response.status_code == 202, response.text
                steps_seen: list[dict[str, Any]] = []

                def enough(event: dict[str, Any]) -> bool:
                    if event["type"] == "run.step":
                        steps_seen.append(event)
                    return len(steps_seen) >= 4

                before = events(http, "batch-crash", until=enough)
                first.kill()
        finished_before = {e["data"]["name"] for e in before if e["type"] == "run.step"}
        assert 4 <= len(finished_before) < ITEMS  # killed mid-pool
        sent_at_kill = len(fake.requests.snapshot())
        with gateway(data, url, None, **env) as second, client(second, key) as http:
            run = wait_status(http, "batch-crash")
            assert run["status"] == "succeeded", run
            assert run["output"]["items"] == ITEMS and run["output"]["succeeded"] == ITEMS
            lines = http.get("/v1/workflow-runs/batch-crash/result").text.splitlines()
            assert len(lines) == ITEMS
            assert [json.loads(line)["index"] for line in lines] == list(range(ITEMS))
            steps = http.get("/v1/workflow-runs/batch-crash/steps").json()["data"]
            assert sorted(s["name"] for s in steps) == sorted(f"item-{i + 1}" for i in range(ITEMS))
        sent = Counter(
            r.json["messages"][-1]["content"]
            for r in fake.requests.snapshot()
            if r.path.endswith("/chat/completions")
        )
    assert set(sent) == {prompt(i) for i in range(ITEMS)}
    assert sum(sent.values()) > sent_at_kill  # the restarted gateway sent the rest
    for name in finished_before:
        index = int(name.removeprefix("item-")) - 1
        assert sent[prompt(index)] == 1, (name, sent)
    # at most the items in flight at the kill (the pool holds 2) were sent again
    assert sum(sent.values()) - ITEMS <= 2, sent
