"""``/v1/workflows`` and ``/v1/workflow-runs`` through the real gateway, on SQLite and
PostgreSQL, with the DBOS engine inside it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.gateway.conftest import Gateway
from tests.memory.rag_fakes import HashEmbedder
from tests.workflows.conftest import documents, follow, wait_finished

pytestmark = pytest.mark.anyio

# The engine's database paths (ids, tenants, lists, steps) run on both back-ends; the rest of
# the behaviour is the same code above them, so it runs on SQLite only to keep the suite quick.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def start(
    client: httpx.AsyncClient, type: str, body: dict[str, Any], **kw: Any
) -> httpx.Response:
    return await client.post(f"/v1/workflows/{type}/runs", json=body, **kw)


async def test_document_ingest_runs_in_checkpointed_batches(
    client: httpx.AsyncClient, embedder: HashEmbedder
) -> None:
    body = {"input": {"collection": "kb", "documents": documents(10), "batch_size": 4}}
    response = await start(client, "document_ingest", body, headers={"Idempotency-Key": "k-1"})
    assert response.status_code == 202, response.text
    run = response.json()
    assert run["type"] == "document_ingest" and run["status"] in ("queued", "running")
    events = await follow(client, run["id"])
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "run.started" and events[-1]["type"] == "run.finished"
    progress = [e["data"]["done"] for e in events if e["type"] == "run.progress"]
    assert progress == [1, 2, 3]
    done = (await client.get(f"/v1/workflow-runs/{run['id']}")).json()
    assert done["status"] == "succeeded" and done["engine_status"] == "SUCCESS"
    assert done["output"]["indexed"] == 10 and done["output"]["batches"] == 3
    assert done["started_by"] and done["finished_at"] and done["input"]["collection"] == "kb"
    steps = (await client.get(f"/v1/workflow-runs/{run['id']}/steps")).json()["data"]
    assert [s["name"] for s in steps] == ["prepare", "batch-1/3", "batch-2/3", "batch-3/3"]
    assert all(s["status"] == "succeeded" and s["attempts"] == 1 for s in steps)
    assert "4 indexed" in steps[1]["output_summary"]
    collection = (await client.get("/v1/memory/collections/kb")).json()
    assert collection["document_count"] == 10
    # The same Idempotency-Key returns the same run and starts nothing.
    calls = embedder.calls
    again = await start(client, "document_ingest", body, headers={"Idempotency-Key": "k-1"})
    assert again.status_code == 202 and again.json()["id"] == run["id"]
    assert again.json()["status"] == "succeeded" and embedder.calls == calls
    metrics = (await client.get("/metrics")).text
    assert 'soma_workflow_runs_started_total{workflow_type="document_ingest"} 1.0' in metrics
    finished = (
        'soma_workflow_runs_finished_total{status="succeeded",workflow_type="document_ingest"}'
    )
    assert finished + " 1.0" in metrics
    assert (
        'soma_workflow_runs_finished_total{status="failed",workflow_type="batch_chat"} 0.0'
        in metrics
    )


@sqlite_only
async def test_bad_input_unknown_type_and_reserved_type(client: httpx.AsyncClient) -> None:
    types = (await client.get("/v1/workflows")).json()["data"]
    by_name = {t["name"]: t for t in types}
    assert set(by_name) == {"agent_run", "batch_chat", "document_ingest"}
    assert "collection" in by_name["document_ingest"]["input_schema"]["properties"]
    assert by_name["agent_run"]["available"] is False
    unknown = await start(client, "nope", {"input": {}})
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["loc"] == ["path", "type"]
    bad = await start(client, "document_ingest", {"input": {"collection": "kb", "documents": []}})
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert bad.json()["errors"][0]["loc"] == ["body", "input", "documents"]
    bad_doc = await start(
        client, "document_ingest", {"input": {"collection": "kb", "documents": [{"txt": "x"}]}}
    )
    locs = [e["loc"] for e in bad_doc.json()["errors"]]
    assert ["body", "input", "documents", 0, "text"] in locs
    reserved = await start(client, "agent_run", {"input": {"agent": "helper"}})
    assert reserved.status_code == 422
    assert reserved.json()["type"] == "urn:somaagent:problem:workflow-type-unavailable"
    assert "later release" in reserved.json()["detail"]
    listed = (await client.get("/v1/workflow-runs")).json()
    assert listed["data"] == []


async def test_ids_tenants_conflicts_and_not_found(gateway: Gateway) -> None:
    client = gateway.client
    body = {"id": "job-1", "input": {"collection": "kb", "documents": documents(2)}}
    first = await start(client, "document_ingest", body)
    assert first.status_code == 202 and first.json()["id"] == "job-1"
    await wait_finished(client, "job-1")
    same = await start(client, "document_ingest", body)
    assert same.json()["id"] == "job-1"
    other_input = {"id": "job-1", "input": {"collection": "kb", "documents": documents(3)}}
    conflict = await start(client, "document_ingest", other_input)
    assert conflict.status_code == 409
    finished_cancel = await client.post("/v1/workflow-runs/job-1/cancel")
    assert finished_cancel.status_code == 409
    assert (await client.post("/v1/workflow-runs/job-1/resume")).status_code == 409
    # Another tenant neither sees the run nor collides with its id.
    other = await gateway.client_for(await gateway.new_key(tenant="acme"))
    assert (await other.get("/v1/workflow-runs/job-1")).status_code == 404
    assert (await other.get("/v1/workflow-runs/job-1/steps")).status_code == 404
    assert (await other.get("/v1/workflow-runs/job-1/events")).status_code == 404
    assert (await other.post("/v1/workflow-runs/job-1/cancel")).status_code == 404
    assert (await other.get("/v1/workflow-runs")).json()["data"] == []
    theirs = await start(other, "document_ingest", body)
    assert theirs.status_code == 202 and theirs.json()["id"] == "job-1"
    assert (await client.get("/v1/workflow-runs/nope")).status_code == 404


@sqlite_only
async def test_a_failing_step_fails_the_run_with_its_error(client: httpx.AsyncClient) -> None:
    body = {
        "input": {"collection": "missing", "documents": documents(1), "create_collection": False}
    }
    run = (await start(client, "document_ingest", body)).json()
    done = await wait_finished(client, run["id"])
    assert done["status"] == "failed"
    assert done["error"]["step"] == "prepare"
    assert done["error"]["type"] == "urn:somaagent:problem:not-found"
    assert done["error"]["attempts"] == 1  # a 404 is not worth retrying
    steps = (await client.get(f"/v1/workflow-runs/{run['id']}/steps")).json()["data"]
    assert steps[0]["status"] == "failed" and steps[0]["error"]["step"] == "prepare"


async def test_list_filters_and_cursor_pages(client: httpx.AsyncClient) -> None:
    ids = []
    for i in range(5):
        body = {"id": f"r{i}", "input": {"collection": "kb", "documents": documents(1, f"d{i}")}}
        ids.append((await start(client, "document_ingest", body)).json()["id"])
    for run_id in ids:
        await wait_finished(client, run_id)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/workflow-runs", params=params)).json()
        seen += [r["id"] for r in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert seen == list(reversed(ids))
    ok = await client.get("/v1/workflow-runs", params={"status": "succeeded"})
    assert len(ok.json()["data"]) == 5
    failed = await client.get("/v1/workflow-runs", params={"status": "failed"})
    assert failed.json()["data"] == []
    typed = await client.get("/v1/workflow-runs", params={"type": "batch_chat"})
    assert typed.json()["data"] == []
    assert (await client.get("/v1/workflow-runs", params={"status": "bogus"})).status_code == 422
    bad_cursor = await client.get("/v1/workflow-runs", params={"cursor": "!!"})
    assert bad_cursor.status_code == 422


@sqlite_only
async def test_events_resume_after_last_event_id_without_gap(client: httpx.AsyncClient) -> None:
    body = {"input": {"collection": "kb", "documents": documents(6), "batch_size": 2}}
    run = (await start(client, "document_ingest", body)).json()
    everything = await follow(client, run["id"])
    assert len(everything) >= 6
    rest = await follow(client, run["id"], headers={"Last-Event-ID": "2"})
    assert [e["seq"] for e in rest] == list(range(3, len(everything)))
    assert rest == everything[3:]
    tail = await follow(client, run["id"], after=len(everything) - 2)
    assert [e["type"] for e in tail] == ["run.finished"]


@sqlite_only
async def test_cancel_resume_and_fork(client: httpx.AsyncClient, embedder: HashEmbedder) -> None:
    embedder_slow = {"input": {"collection": "kb", "documents": documents(12), "batch_size": 1}}
    run = (await start(client, "document_ingest", embedder_slow)).json()
    cancelled = await client.post(f"/v1/workflow-runs/{run['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    resumed = await client.post(f"/v1/workflow-runs/{run['id']}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] in ("queued", "running")
    done = await wait_finished(client, run["id"])
    assert done["status"] == "succeeded" and done["output"]["documents"] == 12
    steps = (await client.get(f"/v1/workflow-runs/{run['id']}/steps")).json()["data"]
    assert len([s for s in steps if s["name"].startswith("batch-")]) == 12
    last = next(s for s in steps if s["name"] == "batch-12/12")
    calls = embedder.calls
    forked = await client.post(
        f"/v1/workflow-runs/{run['id']}/fork", json={"from_step": last["step_id"]}
    )
    assert forked.status_code == 202, forked.text
    fork = await wait_finished(client, forked.json()["id"])
    assert fork["status"] == "succeeded" and fork["forked_from"] == run["id"]
    # Only the last batch ran again, and its document was unchanged: nothing was embedded.
    assert fork["output"]["unchanged"] == 1 and fork["output"]["indexed"] == 11
    assert embedder.calls == calls
    bad = await client.post(f"/v1/workflow-runs/{run['id']}/fork", json={"from_step": 0})
    assert bad.status_code == 422
    past = await client.post(
        f"/v1/workflow-runs/{run['id']}/fork", json={"from_step": last["step_id"] + 999}
    )
    assert past.status_code == 422, past.text
    assert past.headers["content-type"].startswith("application/problem+json")
    assert [e["loc"] for e in past.json()["errors"]] == [["body", "from_step"]]
    assert f"it has {len(steps)} steps" in past.json()["detail"]
    assert f"up to {max(s['step_id'] for s in steps) + 1}" in past.json()["detail"]
    listed = (await client.get("/v1/workflow-runs")).json()["data"]
    assert len(listed) == 2  # the run and the one good fork: the refused fork made no run
