"""Crash suite (issue 14): a real gateway process (uvicorn on SQLite or PostgreSQL, the
embedded memory defaults) is killed with SIGKILL mid-work and started again on the same data
directory and database.

* during a streamed reply sent with an ``Idempotency-Key``: the retry works at once (no 409
  "still in progress" for a request that died with its process), and the conversation holds
  the user message once and one reply;
* during indexing: after the restart the collection serves nothing it does not list (every
  keyword and vector hit belongs to a listed document), and every listed document is
  searchable.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes._server import free_port
from tests.fakes.fixtures import FakeVendor

pytestmark = pytest.mark.slow

KEY_LINE = re.compile(r"^\s+(soma_sk_\S+)\s*$", re.M)


class Gateway:
    """A gateway process on a data directory that outlives it."""

    def __init__(self, data_dir: Path, upstream: FakeVendor, database_url: str | None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "SOMA_DATA_DIR": str(data_dir),
            "SOMA_OPENAI_BASE_URL": upstream.base_url,
            "SOMA_OPENAI_API_KEY": upstream.api_key,
            "SOMA_DEFAULT_MODEL": "gpt-4o-mini",
            "SOMA_RATE_LIMIT_PER_MINUTE": "0",
            "SOMA_LOG_LEVEL": "warning",
        }
        for name in ("SOMA_DATABASE_URL", "SOMA_MODELS_FILE", "SOMA_MODE"):
            self.env.pop(name, None)
        if database_url is not None:
            self.env["SOMA_DATABASE_URL"] = database_url
        self.process: subprocess.Popen[str] | None = None
        self.key = ""

    def start(self) -> None:
        self.log = self.data_dir.parent / f"gateway-{time.monotonic_ns()}.log"
        command = [
            sys.executable, "-m", "uvicorn", "--factory", "somaagent.gateway.app:create_app",
            "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log",
        ]  # fmt: skip
        with self.log.open("w") as log:  # the child keeps its own handle
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, text=True
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError("the gateway did not start: " + self.log.read_text()[-3000:])
        found = KEY_LINE.search(self.log.read_text())
        if found:
            self.key = found.group(1)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=60
        )


@pytest.fixture(params=["sqlite", "postgres"])
def gateway(
    request: pytest.FixtureRequest, tmp_path: Path, fake_openai: FakeVendor
) -> Iterator[Gateway]:
    database_url = None  # the embedded default: SQLite in the data directory
    if request.param == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        database_url = cluster.create_database("crash_" + secrets.token_hex(6))
    served = Gateway(tmp_path / "data", fake_openai, database_url)
    served.start()
    assert served.key, "no admin key was printed on the first start"
    try:
        yield served
    finally:
        served.stop()


def messages(client: httpx.Client, conv_id: str) -> list[dict[str, Any]]:
    page = client.get(f"/v1/conversations/{conv_id}/messages", params={"limit": 100})
    assert page.status_code == 200, page.text
    data: list[dict[str, Any]] = page.json()["data"]
    return data


def test_kill_during_a_streamed_reply_then_retry_at_once(gateway: Gateway) -> None:
    with gateway.client() as client:
        conv = client.post("/v1/conversations", json={}).json()["id"]
        body = {"content": "tell me [[slow]] a b c d e f g h", "stream": True}
        headers = {"Idempotency-Key": "crash-1"}
        url = f"/v1/conversations/{conv}/messages"
        with client.stream("POST", url, json=body, headers=headers) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("event: message.delta"):
                    break  # the model is mid-answer: kill the gateway now
            gateway.kill()
    gateway.start()
    with gateway.client() as client:
        retried = client.post(url, json={**body, "stream": False}, headers=headers)
        assert retried.status_code == 201, retried.text  # not 409 "still in progress"
        exchange = retried.json()
        assert exchange["reply"]["content"] == "Echo: " + body["content"]
        stored = messages(client, conv)
        assert [m["role"] for m in stored] == ["user", "assistant"], stored
        assert stored[0]["id"] == exchange["message"]["id"]
        replayed = client.post(url, json={**body, "stream": False}, headers=headers)
        assert replayed.status_code == 201 and replayed.json() == exchange


def test_kill_during_indexing_leaves_nothing_hidden(gateway: Gateway) -> None:
    documents = [
        {"id": f"doc-{i:03d}", "text": f"# Topic {i}\n\nsharedword item{i} " + "filler " * 40}
        for i in range(200)
    ]
    with gateway.client() as client:
        assert client.post("/v1/memory/collections", json={"name": "kb"}).status_code == 201
    # the request runs in a child so the test can kill the gateway while it is in flight
    code = (
        "import httpx, json, sys\n"
        "httpx.post(sys.argv[1], json=json.loads(sys.stdin.read()),"
        " headers={'Authorization': 'Bearer ' + sys.argv[2]}, timeout=300)\n"
    )
    poster = subprocess.Popen(
        [sys.executable, "-c", code, f"{gateway.url}/v1/memory/collections/kb/documents",
         gateway.key],
        stdin=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert poster.stdin is not None
    poster.stdin.write(json.dumps({"documents": documents}))
    poster.stdin.close()
    # kill as soon as the first batch is searchable: indexing is under way, far from done
    with gateway.client() as client:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            body = {"query": "sharedword", "mode": "keyword", "k": 5}
            found = client.post("/v1/memory/collections/kb/search", json=body)
            if found.status_code == 200 and found.json()["data"]:
                break
            time.sleep(0.1)
    gateway.kill()
    poster.wait(timeout=30)
    gateway.start()
    with gateway.client() as client:
        listed = client.get("/v1/memory/collections/kb/documents", params={"limit": 100}).json()
        ids = {d["id"] for d in listed["data"]}
        cursor = listed.get("next_cursor")
        while cursor:
            page = client.get(
                "/v1/memory/collections/kb/documents", params={"limit": 100, "cursor": cursor}
            ).json()
            ids |= {d["id"] for d in page["data"]}
            cursor = page.get("next_cursor")
        info = client.get("/v1/memory/collections/kb").json()
        assert len(ids) < len(documents)  # the kill came mid-way
        assert info["document_count"] == len(ids)
        for mode in ("keyword", "vector", "hybrid"):
            body = {"query": "sharedword", "mode": mode, "k": 100}
            hits = client.post("/v1/memory/collections/kb/search", json=body)
            assert hits.status_code == 200, hits.text
            served = {h["document_id"] for h in hits.json()["data"]}
            assert served <= ids, f"{mode}: {len(served - ids)} hits from unlisted documents"
        retrieved = client.post(
            "/v1/memory/collections/kb/retrieve", json={"query": "sharedword", "k": 50}
        )
        assert retrieved.status_code == 200, retrieved.text
        sources = {s["document_id"] for s in retrieved.json()["sources"]}
        assert sources <= ids
        for document_id in sorted(ids)[:5]:  # a listed document is searchable and deletable
            number = int(document_id.split("-")[1])
            body = {"query": f"item{number}", "mode": "keyword", "k": 5}
            hits = client.post("/v1/memory/collections/kb/search", json=body).json()["data"]
            assert document_id in {h["document_id"] for h in hits}
        # the same documents index again cleanly after the crash
        again = client.post("/v1/memory/collections/kb/documents", json={"documents": documents})
        assert again.status_code in (200, 201), again.text
        assert client.get("/v1/memory/collections/kb").json()["document_count"] == 200
