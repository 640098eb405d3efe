"""The SDK (both clients) and ``soma workflow`` against a real gateway served on loopback."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from somaagent import errors
from somaagent.cli import main
from somaagent.sdk import AsyncClient, Client
from tests.fakes._server import run_asgi
from tests.fakes.fixtures import FakeVendor
from tests.gateway.conftest import make_settings
from tests.workflows.conftest import documents, memory_factory


class Served:
    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key

    def client(self) -> Client:
        return Client(api_key=self.key, base_url=self.url)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, fake_openai: FakeVendor) -> Iterator[Served]:
    from somaagent.gateway.app import create_app

    saved = dict(os.environ)
    os.environ["SOMA_WORKFLOW_POLLING_INTERVAL_S"] = "0.05"
    tmp = tmp_path_factory.mktemp("wf-served")
    settings = make_settings(tmp, f"sqlite+aiosqlite:///{tmp / 'soma.db'}", fake_openai)
    admin: list[str] = []
    app = create_app(settings, on_admin_key=admin.append)
    app.state.memory_factory = memory_factory(tmp / "data")
    try:
        with run_asgi(app, lifespan="on") as url:
            yield Served(url, admin[0])
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_sync_client_start_wait_list_steps_events_and_errors(served: Served) -> None:
    with served.client() as client:
        names = {t.name for t in client.workflows.types()}
        assert {"document_ingest", "batch_chat", "agent_run"} <= names
        body = {"collection": "sdk", "documents": documents(5), "batch_size": 2}
        run = client.workflows.start("document_ingest", body, wait=True)
        assert run.status == "succeeded" and run.output["indexed"] == 5
        assert run.created_at.tzinfo is not None and run.finished_at is not None
        again = client.workflows.start("document_ingest", body, id=run.id)
        assert again.id == run.id
        steps = client.workflows.steps(run.id)
        assert [s.name for s in steps][:2] == ["prepare", "batch-1/3"]
        assert steps[1].started_at is not None and steps[1].duration_ms is not None
        events = list(client.workflows.stream_events(run.id, after=2))
        assert events[0].seq == 3 and events[-1].type == "run.finished"
        for i in range(2):
            client.workflows.start(
                "document_ingest",
                {"collection": "sdk", "documents": documents(1, f"x{i}")},
                wait=True,
            )
        pages = list(client.workflows.pages(type="document_ingest", page_size=2))
        assert len(pages) == 2 and pages[0].has_more
        listed = [r.id for r in client.workflows.list(status="succeeded", page_size=1)]
        assert len(listed) == 3 and listed[-1] == run.id
        with pytest.raises(errors.ConflictError):
            client.workflows.cancel(run.id)
        with pytest.raises(errors.NotFoundError):
            client.workflows.get("no-such-run")
        with pytest.raises(errors.ValidationError) as bad:
            client.workflows.start("document_ingest", {"collection": "sdk"})
        assert bad.value.errors[0]["loc"] == ["body", "input", "documents"]
        with pytest.raises(errors.WorkflowTypeUnavailableError):
            client.workflows.start("agent_run", {"agent": "a"})


def test_batch_chat_result_through_the_sdk(served: Served) -> None:
    with served.client() as client:
        items = [{"prompt": "hello there"}, {"prompt": "and again", "id": "two"}]
        run = client.workflows.start("batch_chat", {"items": items}, wait=True)
        assert run.status == "succeeded" and run.output["succeeded"] == 2
        lines = client.workflows.result(run.id)
        assert [line["index"] for line in lines] == [0, 1] and lines[1]["id"] == "two"
        assert run.cost_usd is not None and run.cost_usd > 0


@pytest.mark.anyio
async def test_async_client_cancel_resume_fork(served: Served) -> None:
    async with AsyncClient(api_key=served.key, base_url=served.url) as client:
        body = {"collection": "async", "documents": documents(6), "batch_size": 1}
        run = await client.workflows.start("document_ingest", body, id="async-1")
        assert run.id == "async-1"
        cancelled = await client.workflows.cancel(run.id)
        assert cancelled.status == "cancelled"
        assert (await client.workflows.resume(run.id)).status in ("queued", "running")
        seqs = [e.seq async for e in client.workflows.stream_events(run.id)]
        assert seqs == list(range(len(seqs)))
        done = await client.workflows.wait(run.id)
        assert done.status == "succeeded"
        steps = await client.workflows.steps(run.id)
        fork = await client.workflows.fork(run.id, steps[-1].step_id)
        finished = await client.workflows.wait(fork.id)
        assert finished.status == "succeeded" and finished.forked_from == run.id
        runs = [r.id async for r in client.workflows.list(page_size=2)]
        assert fork.id in runs and run.id in runs


@pytest.fixture
def invoke(served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("SOMA_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("SOMA_API_KEY", served.key)
    monkeypatch.setenv("SOMA_BASE_URL", served.url)
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Result:
        return runner.invoke(main, list(args), input=input, catch_exceptions=True)

    return run


def test_cli_start_follow_status_list_logs_cancel(invoke: Any, tmp_path: Path) -> None:
    types = invoke("workflow", "types")
    assert types.exit_code == 0 and "document_ingest" in types.output
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"documents": documents(4), "batch_size": 2}))
    started = invoke(
        "workflow",
        "start",
        "document_ingest",
        "--input",
        str(job),
        "--set",
        "collection=cli",
        "--id",
        "cli-1",
        "--follow",
    )
    assert started.exit_code == 0, started.output
    assert "progress 2/2" in started.output and "succeeded" in started.output
    status = invoke("workflow", "status", "cli-1", "--json")
    assert json.loads(status.output)["status"] == "succeeded"
    listed = invoke("workflow", "list", "--status", "succeeded", "--json")
    assert "cli-1" in [r["id"] for r in json.loads(listed.output)]
    table = invoke("workflow", "list", "--type", "document_ingest")
    assert "cli-1" in table.output and "succeeded" in table.output
    logs = invoke("workflow", "logs", "cli-1", "--json")
    events = [json.loads(line) for line in logs.output.splitlines()]
    assert events[0]["type"] == "run.started" and events[-1]["type"] == "run.finished"
    refused = invoke("workflow", "cancel", "cli-1")
    assert refused.exit_code != 0 and "finished" in refused.output
    missing = invoke("workflow", "status", "nope")
    assert missing.exit_code != 0


def test_cli_logs_follow_of_a_cancelled_run_says_so_and_exits_1(
    invoke: Any, served: Served
) -> None:
    body = {"collection": "stopped", "documents": documents(6), "batch_size": 1}
    with served.client() as client:
        run = client.workflows.start("document_ingest", body, id="cli-cancel")
        assert client.workflows.cancel(run.id).status == "cancelled"
        events = list(client.workflows.stream_events(run.id))
        assert events[-1].type == "run.finished" and events[-1].data["status"] == "cancelled"
    followed = invoke("workflow", "logs", run.id, "--follow")
    assert followed.exit_code == 1, followed.output
    assert followed.output.splitlines()[-1].endswith("run.finished cancelled")
    waited = invoke(
        "workflow",
        "start",
        "document_ingest",
        "--id",
        run.id,
        "--input",
        "-",
        "--wait",
        input=json.dumps(body),
    )
    assert waited.exit_code == 1 and "cancelled" in waited.output


def test_cli_jsonl_batch_and_stdin(invoke: Any, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "one"}\n{"prompt": "two"}\n')
    done = invoke("workflow", "start", "batch_chat", "--input", str(prompts), "--wait", "--json")
    assert done.exit_code == 0, done.output
    run = json.loads(done.output)
    assert run["status"] == "succeeded" and run["output"]["items"] == 2
    # the result file, printed and written; the steps that made it
    printed = invoke("workflow", "result", run["id"])
    assert printed.exit_code == 0, printed.output
    rows = [json.loads(line) for line in printed.stdout.splitlines()]
    assert [r["index"] for r in rows] == [0, 1]
    assert [r["content"] for r in rows] == ["Echo: one", "Echo: two"]
    saved = tmp_path / "out" / "result.jsonl"
    saved.parent.mkdir()
    written = invoke("workflow", "result", run["id"], "-o", str(saved))
    assert written.exit_code == 0 and "wrote 2 results" in written.output
    assert saved.read_text() == printed.stdout
    steps = invoke("workflow", "steps", run["id"], "--json")
    assert steps.exit_code == 0, steps.output
    listed = json.loads(steps.stdout)
    assert listed and all(s["status"] == "succeeded" for s in listed)
    assert [s["step_id"] for s in listed] == sorted(s["step_id"] for s in listed)
    table = invoke("workflow", "steps", run["id"])
    assert all(s["name"] in table.stdout for s in listed)
    body = json.dumps({"collection": "stdin", "documents": documents(1)})
    queued = invoke("workflow", "start", "document_ingest", "--input", "-", "--json", input=body)
    assert json.loads(queued.output)["status"] in ("queued", "running", "succeeded")
    bad = invoke("workflow", "start", "document_ingest", "--set", "collection=x")
    assert bad.exit_code != 0 and "documents" in bad.output


def test_cli_follow_shows_a_rich_progress_display_on_a_terminal(
    invoke: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from somaagent.cli import _render

    monkeypatch.setattr(_render, "is_terminal", lambda: True)
    body = json.dumps({"collection": "rich", "documents": documents(4), "batch_size": 1})
    shown = invoke("workflow", "start", "document_ingest", "--input", "-", "--follow", input=body)
    assert shown.exit_code == 0, shown.output
    # Steps are printed above a progress bar (its N/M column), not as "progress" lines.
    assert "step batch-4/4 succeeded" in shown.output
    assert "4/4" in shown.output.replace("batch-4/4", "") and "progress 4/4" not in shown.output
    assert "status:" in shown.output and "succeeded (SUCCESS)" in shown.output


def test_upload_then_ingest_through_both_clients_and_a_refusal(
    served: Served, tmp_path: Path
) -> None:
    (tmp_path / "one.md").write_text("# One\n\nThe first uploaded fact.")
    (tmp_path / "two.txt").write_text("The second uploaded fact.")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01\x02")
    with served.client() as client:
        upload = client.workflows.upload([tmp_path / "one.md", str(tmp_path / "two.txt")])
        assert [f.name for f in upload.files] == ["one.md", "two.txt"]
        assert upload.created_at.tzinfo is not None
        body = {"collection": "sdk-up", "uploads": [upload.id], "batch_size": 1}
        run = client.workflows.start("document_ingest", body, wait=True)
        assert run.status == "succeeded" and run.output["indexed"] == 2
        with pytest.raises(errors.ValidationError) as bad:
            client.workflows.upload([tmp_path / "blob.bin"])
        assert bad.value.errors[0]["loc"] == ["body", "files", 0]
        with pytest.raises(errors.ValidationError) as unknown:
            client.workflows.start(
                "document_ingest", {"collection": "x", "uploads": ["up_" + "1" * 20]}
            )
        assert unknown.value.errors[0]["loc"] == ["body", "input", "uploads", 0]

    async def use_async() -> None:
        async with AsyncClient(api_key=served.key, base_url=served.url) as client:
            upload = await client.workflows.upload([tmp_path / "one.md"])
            run = await client.workflows.start(
                "document_ingest", {"collection": "async-up", "uploads": [upload.id]}, wait=True
            )
            assert run.status == "succeeded" and run.output["documents"] == 1

    import anyio

    anyio.run(use_async)


def test_cli_start_with_files_uploads_then_starts(invoke: Any, tmp_path: Path) -> None:
    a, b = tmp_path / "a.md", tmp_path / "b.md"
    a.write_text("# A\n\nThe a fact.")
    b.write_text("# B\n\nThe b fact.")
    args = ("workflow", "start", "document_ingest", "--set", "collection=cli-up")
    done = invoke(*args, "--file", str(a), "--file", str(b), "--wait", "--json")
    assert done.exit_code == 0, done.output
    run = json.loads(done.output)
    assert run["status"] == "succeeded" and run["output"]["indexed"] == 2
    assert run["input"]["uploads"][0].startswith("up_")
    wrong = invoke("workflow", "start", "batch_chat", "--file", str(a))
    assert wrong.exit_code != 0 and "document_ingest" in wrong.output


def test_cli_a_failed_run_is_not_resumed_but_forked_from_the_step_named(
    invoke: Any, served: Served
) -> None:
    body = {"collection": "later", "documents": documents(1), "create_collection": False}
    with served.client() as client:
        run = client.workflows.start("document_ingest", body, wait=True)
        assert run.status == "failed" and run.error is not None and run.error.step == "prepare"
        (failed,) = [s for s in client.workflows.steps(run.id) if s.status == "failed"]
    refused = invoke("workflow", "resume", run.id)
    assert refused.exit_code != 0
    assert f"fork it from step {failed.step_id} instead" in " ".join(refused.output.split())
    import httpx

    made = httpx.post(
        f"{served.url}/v1/memory/collections",
        json={"name": "later"},
        headers={"Authorization": f"Bearer {served.key}"},
    )
    assert made.status_code == 201, made.text
    forked = invoke("workflow", "fork", run.id, "--from-step", str(failed.step_id), "--json")
    assert forked.exit_code == 0, forked.output
    fork = json.loads(forked.output)
    assert fork["forked_from"] == run.id
    with served.client() as client:
        done = client.workflows.wait(fork["id"])
    assert done.status == "succeeded" and done.output["indexed"] == 1


def test_uploads_are_shown_and_deleted_through_both_clients_and_the_cli(
    served: Served, invoke: Any, tmp_path: Path
) -> None:
    (tmp_path / "one.md").write_text("# One\n\nAn uploaded fact.")
    with served.client() as client:
        upload = client.workflows.upload([tmp_path / "one.md"])
        shown = client.workflows.get_upload(upload.id)
        assert shown.id == upload.id and shown.expires_at is not None
        assert shown.expires_at > shown.created_at
        client.workflows.delete_upload(upload.id)
        with pytest.raises(errors.NotFoundError):
            client.workflows.get_upload(upload.id)
        with pytest.raises(errors.NotFoundError):
            client.workflows.delete_upload(upload.id)
        for_cli = client.workflows.upload([tmp_path / "one.md"])

    async def use_async() -> None:
        async with AsyncClient(api_key=served.key, base_url=served.url) as client:
            upload = await client.workflows.upload([tmp_path / "one.md"])
            assert (await client.workflows.get_upload(upload.id)).files[0].name == "one.md"
            await client.workflows.delete_upload(upload.id)
            with pytest.raises(errors.NotFoundError):
                await client.workflows.get_upload(upload.id)

    import anyio

    anyio.run(use_async)
    deleted = invoke("workflow", "delete-upload", for_cli.id)
    assert deleted.exit_code == 0 and f"deleted upload {for_cli.id}" in deleted.output
    again = invoke("workflow", "delete-upload", for_cli.id, "--json")
    assert again.exit_code != 0 and "no upload" in again.output
