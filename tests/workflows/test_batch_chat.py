"""``batch_chat`` through the real gateway and its router, against the OpenAI-wire fake."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.fakes.fixtures import FakeVendor
from tests.workflows.conftest import follow, wait_finished

pytestmark = pytest.mark.anyio


@pytest.fixture
def database_url(tmp_path: object) -> str:  # SQLite only: the engine paths are covered twice
    return f"sqlite+aiosqlite:///{tmp_path}/soma.db"


async def test_batch_chat_items_results_cost_and_result_file(
    client: httpx.AsyncClient, fake_openai: FakeVendor
) -> None:
    fake_openai.clear()
    items = [{"id": f"q{i}", "prompt": f"say {i}"} for i in range(4)]
    items.insert(2, {"id": "bad", "prompt": "x", "model": "no-such-model"})
    body = {"input": {"items": items, "concurrency": 2}}
    response = await client.post("/v1/workflows/batch_chat/runs", json=body)
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]
    events = await follow(client, run_id)
    progress = [e["data"]["done"] for e in events if e["type"] == "run.progress"]
    assert progress == [2, 4, 5]
    done = await wait_finished(client, run_id)
    assert done["status"] == "succeeded", done
    output = done["output"]
    assert output["items"] == 5 and output["succeeded"] == 4 and output["failed"] == 1
    assert output["cost_usd"] > 0 and done["cost_usd"] == pytest.approx(output["cost_usd"])
    assert len(fake_openai.requests) == 4  # the unknown model never reached a provider
    steps = (await client.get(f"/v1/workflow-runs/{run_id}/steps")).json()["data"]
    assert [s["name"] for s in steps] == [f"item-{i}" for i in range(1, 6)]
    assert sum(s["cost_usd"] or 0 for s in steps) == pytest.approx(output["cost_usd"])
    result = await client.get(f"/v1/workflow-runs/{run_id}/result")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in result.text.splitlines()]
    assert [line["id"] for line in lines] == ["q0", "q1", "bad", "q2", "q3"]
    assert [line["index"] for line in lines] == [0, 1, 2, 3, 4]
    assert "say 1" in lines[1]["content"] and lines[1]["model"] == "gpt-4o-mini"
    assert lines[2]["error"]["type"] == "urn:somaagent:problem:validation-error"
    assert "error" not in lines[0]


async def test_result_file_only_for_finished_runs_of_types_that_have_one(
    client: httpx.AsyncClient,
) -> None:
    body = {"input": {"collection": "kb", "documents": [{"text": "hello"}]}}
    run_id = (await client.post("/v1/workflows/document_ingest/runs", json=body)).json()["id"]
    await wait_finished(client, run_id)
    assert (await client.get(f"/v1/workflow-runs/{run_id}/result")).status_code == 404
