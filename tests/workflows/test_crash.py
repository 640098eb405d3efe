"""Crash tests: real gateway processes, killed with ``kill -9`` in the middle of a run.

SQLite: one process runs ``document_ingest``; it is killed after a few batches and started
again on the same data directory; the run ends ``succeeded``, no finished batch is embedded
again, and the collection equals an uninterrupted ingest of the same documents.

PostgreSQL: two processes share the queue (runs spread over both) and, when one is killed,
the other takes over its unfinished runs (see ``somaagent.workflows.takeover``).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes._server import free_port
from tests.pg import PostgresCluster

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


class Proc:
    def __init__(self, popen: subprocess.Popen[bytes], url: str, data_dir: Path) -> None:
        self.popen, self.url, self.data_dir = popen, url, data_dir

    def kill(self) -> None:
        os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)


@contextmanager
def gateway(
    data_dir: Path, database_url: str, shared: Path | None = None, **env: str
) -> Iterator[Proc]:
    """A gateway process on a free port, stopped (if still alive) on exit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SOMA_WORKFLOW_POLLING_INTERVAL_S": "0.05",
        "SOMA_WORKFLOW_MAINTENANCE_INTERVAL_S": "0.3",
        **env,
    }
    log = (data_dir / f"gateway-{port}.log").open("wb")
    popen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.workflows._gateway_proc",
            "--data-dir",
            str(data_dir),
            "--database-url",
            database_url,
            "--port",
            str(port),
            *(["--shared-dir", str(shared)] if shared else []),
        ],
        cwd=ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    proc = Proc(popen, f"http://127.0.0.1:{port}", data_dir)
    try:
        deadline = time.monotonic() + 60
        while True:
            if popen.poll() is not None:
                raise RuntimeError((data_dir / f"gateway-{port}.log").read_text()[-3000:])
            try:
                if httpx.get(proc.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.1)
        yield proc
    finally:
        if popen.poll() is None:
            popen.terminate()
            try:
                popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                popen.kill()
        log.close()


def client(proc: Proc, key: str) -> httpx.Client:
    return httpx.Client(base_url=proc.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def docs(count: int, prefix: str = "") -> list[dict[str, Any]]:
    return [
        {"id": f"doc-{i}", "text": f"{prefix}doc-{i} says fact {i} about topic {i % 3}."}
        for i in range(count)
    ]


def events(
    http: httpx.Client, run_id: str, after: int = -1, until: Any = None
) -> list[dict[str, Any]]:
    """Events from the SSE stream; stops early when ``until(event)`` is true."""
    seen: list[dict[str, Any]] = []
    headers = {"Last-Event-ID": str(after)} if after >= 0 else {}
    with http.stream("GET", f"/v1/workflow-runs/{run_id}/events", headers=headers) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line[6:]))
                if until is not None and until(seen[-1]):
                    break
    return seen


def wait_status(http: httpx.Client, run_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = http.get(f"/v1/workflow-runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            return dict(run)
        time.sleep(0.1)


def embedded(data_dir: Path) -> list[dict[str, Any]]:
    log = data_dir / "embedded.log"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def doc_of(text: str) -> str:
    return text.split(" ", 1)[0]


def test_kill_9_mid_ingest_then_restart_finishes_without_embedding_twice(tmp_path: Path) -> None:
    data = tmp_path / "data"
    url = f"sqlite+aiosqlite:///{data / 'soma.db'}"
    documents = docs(16)
    body = {"id": "crash-1", "input": {"collection": "kb", "documents": documents, "batch_size": 2}}
    with gateway(data, url) as first:
        key = (data / "admin.key").read_text()
        with client(first, key) as http:
            assert http.post("/v1/workflows/document_ingest/runs", json=body).status_code == 202
            before = events(
                http,
                "crash-1",
                until=lambda e: e["type"] == "run.progress" and e["data"]["done"] >= 3,
            )
            first.kill()
    finished_before = {
        e["data"]["name"]
        for e in before
        if e["type"] == "run.step" and e["data"]["name"] != "prepare"
    }
    assert len(finished_before) >= 3
    first_pid = first.popen.pid
    with gateway(data, url) as second, client(second, key) as http:
        rest = events(http, "crash-1", after=before[-1]["seq"])
        run = wait_status(http, "crash-1")
        assert run["status"] == "succeeded", run
        assert run["output"]["documents"] == 16 and run["output"]["batches"] == 8
        # The stream continued where it was cut: no gap, no duplicate.
        seqs = [e["seq"] for e in before + rest]
        assert seqs == list(range(len(seqs)))
        steps = http.get("/v1/workflow-runs/crash-1/steps").json()["data"]
        names = [s["name"] for s in steps]
        assert names == ["prepare", *[f"batch-{i}/8" for i in range(1, 9)]]
        # An uninterrupted ingest of the same documents, for comparison.
        ref = {"input": {"collection": "ref", "documents": documents, "batch_size": 2}}
        ref_id = http.post("/v1/workflows/document_ingest/runs", json=ref).json()["id"]
        assert wait_status(http, ref_id)["status"] == "succeeded"
        kb = http.get("/v1/memory/collections/kb").json()
        reference = http.get("/v1/memory/collections/ref").json()
        assert kb["document_count"] == reference["document_count"] == 16
        assert kb["chunk_count"] == reference["chunk_count"]
        query = {"query": "fact 7 about topic 1", "k": 5, "mode": "vector"}
        hits = http.post("/v1/memory/collections/kb/search", json=query).json()
        ref_hits = http.post("/v1/memory/collections/ref/search", json=query).json()
        assert len(hits["data"]) == 5
        assert [h["document_id"] for h in hits["data"]] == [
            h["document_id"] for h in ref_hits["data"]
        ]
    # What was embedded for kb: every document, and none of a finished batch twice.
    log = [e for e in embedded(data)]
    by_doc: dict[str, list[int]] = {}
    for entry in log:
        by_doc.setdefault(doc_of(entry["text"]), []).append(entry["pid"])
    kb_docs = {d["id"] for d in documents}
    finished_docs = {
        f"doc-{2 * (int(name.split('-')[1].split('/')[0]) - 1) + k}"
        for name in finished_before
        for k in (0, 1)
    }
    for doc in finished_docs:
        # once for kb before the kill, once for the reference collection after the restart
        assert by_doc[doc] == [first_pid, by_doc[doc][1]] and by_doc[doc][1] != first_pid, doc
    twice = [d for d in kb_docs if len(by_doc[d]) > 2]
    assert all(d not in finished_docs for d in twice)
    assert len(twice) <= 2  # at most the batch the kill cut short ran again


@pytest.fixture
def pg_url(pg_cluster: PostgresCluster) -> str:
    return pg_cluster.create_database("wf_" + secrets.token_hex(5))


def test_postgres_two_gateways_share_the_queue_and_take_over_a_dead_ones_runs(
    tmp_path: Path, pg_url: str
) -> None:
    env = {"SOMA_WORKFLOW_CONCURRENCY": "2", "SOMA_TEST_SLOW_EMBED_S": "0.3"}
    shared = tmp_path / "shared"
    shared.mkdir()
    with gateway(tmp_path / "a", pg_url, shared, SOMA_WORKFLOW_EXECUTOR_ID="gw-a", **env) as a:
        key = (tmp_path / "a" / "admin.key").read_text()
        with (
            gateway(tmp_path / "b", pg_url, shared, SOMA_WORKFLOW_EXECUTOR_ID="gw-b", **env) as b,
            client(a, key) as http_a,
            client(b, key) as http_b,
        ):
            ids = []
            for i in range(6):
                body = {
                    "id": f"pg-{i}",
                    # each run's texts its own, so the embed logs tell the runs apart
                    "input": {
                        "collection": f"c{i}",
                        "documents": docs(8, f"r{i}-"),
                        "batch_size": 1,
                    },
                }
                assert (
                    http_a.post("/v1/workflows/document_ingest/runs", json=body).status_code == 202
                )
                ids.append(f"pg-{i}")
            # Both processes pick work from the shared queue.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                runs = [http_b.get(f"/v1/workflow-runs/{i}").json() for i in ids]
                running = {r["executor_id"] for r in runs if r["status"] == "running"}
                if {"gw-a", "gw-b"} <= running:
                    break
                time.sleep(0.1)
            assert {"gw-a", "gw-b"} <= running, runs
            # Kill gw-a once it has finished a batch or two, so some are done and some not.
            while time.monotonic() < deadline:
                batches = sum(
                    s["name"].startswith("batch-")
                    for r in runs
                    if r["executor_id"] == "gw-a" and r["status"] == "running"
                    for s in http_b.get(f"/v1/workflow-runs/{r['id']}/steps").json()["data"]
                )
                if batches >= 2:
                    break
                time.sleep(0.1)
            runs = [http_b.get(f"/v1/workflow-runs/{i}").json() for i in ids]
            a_runs = [
                r["id"] for r in runs if r["executor_id"] == "gw-a" and r["status"] == "running"
            ]
            a.kill()
            killed_ms = time.time() * 1000  # gw-a recorded every step it finished before this
            # gw-b sees gw-a's lock released and puts its runs back in the queue.
            finished = [wait_status(http_b, i, timeout=90) for i in ids]
            assert [r["status"] for r in finished] == ["succeeded"] * 6, [
                (r["id"], r["status"], r["error"], r["executor_id"]) for r in finished
            ]
            for i, run in enumerate(finished):
                assert run["output"]["documents"] == 8
                collection = http_b.get(f"/v1/memory/collections/c{i}").json()
                assert collection["document_count"] == 8
            taken = [r for r in finished if r["id"] in a_runs]
            assert taken and all(r["executor_id"] == "gw-b" for r in taken)
            # No batch finished before the kill was embedded again (batch-k/8 holds doc-(k-1)).
            done_before = set()
            for i in ids:
                for step in http_b.get(f"/v1/workflow-runs/{i}/steps").json()["data"]:
                    at = datetime.fromisoformat(step["finished_at"]).timestamp() * 1000
                    if step["name"].startswith("batch-") and at < killed_ms:
                        k = int(step["name"].split("-")[1].split("/")[0])
                        done_before.add(f"r{i[3:]}-doc-{k - 1}")
    by_doc: dict[str, list[int]] = {}
    for entry in embedded(tmp_path / "a") + embedded(tmp_path / "b"):
        by_doc.setdefault(doc_of(entry["text"]), []).append(entry["pid"])
    assert len(by_doc) == 6 * 8  # every document of every run was embedded
    twice = {d: pids for d, pids in by_doc.items() if len(pids) > 1}
    assert done_before and not set(twice) & done_before, (twice, done_before)
    # at most the batch the kill cut short, once per taken-over run, by gw-a then gw-b
    assert len(twice) <= len(taken), twice
    assert all(pids == [a.popen.pid, b.popen.pid] for pids in twice.values()), twice
