"""Crash test of ``document_ingest`` over uploaded files: files uploaded to a real gateway
process, which is killed with ``kill -9`` both after the upload and in the middle of the run;
each restarted process finds the upload in the database and the run finishes with no finished
batch embedded twice."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.workflows.test_crash import client, embedded, events, gateway, wait_status

pytestmark = pytest.mark.slow

FILES = 8


def test_uploads_survive_kill_9_and_a_run_over_them_resumes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    url = f"sqlite+aiosqlite:///{data / 'soma.db'}"
    files = [
        ("files", (f"f{i}.md", f"f{i} holds fact {i}.".encode(), "text/markdown"))
        for i in range(FILES)
    ]
    with gateway(data, url) as first:
        key = (data / "admin.key").read_text()
        with client(first, key) as http:
            response = http.post("/v1/workflows/document_ingest/uploads", files=files)
            assert response.status_code == 201, response.text
            upload_id = response.json()["id"]
        first.kill()  # right after the answer: the upload must be in the database already
    body = {
        "id": "up-crash",
        "input": {"collection": "kb", "uploads": [upload_id], "batch_size": 1},
    }
    with gateway(data, url) as second, client(second, key) as http:
        assert http.post("/v1/workflows/document_ingest/runs", json=body).status_code == 202
        before = events(
            http, "up-crash", until=lambda e: e["type"] == "run.progress" and e["data"]["done"] >= 3
        )
        second.kill()
    done_before = max(e["data"]["done"] for e in before if e["type"] == "run.progress")
    assert 3 <= done_before < FILES
    with gateway(data, url) as third, client(third, key) as http:
        run = wait_status(http, "up-crash")
        assert run["status"] == "succeeded", run
        assert run["output"]["documents"] == FILES and run["output"]["batches"] == FILES
        listed = http.get("/v1/memory/collections/kb/documents").json()["data"]
        assert {d["id"] for d in listed} == {f"{upload_id}/{i}/f{i}.md" for i in range(FILES)}
    counts = Counter(entry["text"].split(" ", 1)[0] for entry in embedded(data))
    assert set(counts) == {f"f{i}" for i in range(FILES)}
    for i in range(done_before):  # batch i+1 finished before the kill: embedded once
        assert counts[f"f{i}"] == 1, counts
    assert sum(counts.values()) - FILES <= 1  # at most the batch cut short ran again
