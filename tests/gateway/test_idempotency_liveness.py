"""An ``Idempotency-Key`` whose request is known dead is retryable at once (issue 14): here a
streaming client hangs up mid-answer (real uvicorn on loopback); the kill -9 case is in
``test_crash.py``. A request still running keeps its key: a concurrent retry is a 409. Runs on
SQLite and PostgreSQL (``database_url``): the claim is taken over by one conditional update,
which each database must honour."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from somaagent.gateway.app import create_app
from tests.fakes._server import run_asgi
from tests.gateway.conftest import make_settings

pytestmark = pytest.mark.slow


def test_a_hung_up_stream_frees_its_key(
    tmp_path: Path, database_url: str, fake_openai: Any
) -> None:
    keys: list[str] = []
    app = create_app(make_settings(tmp_path, database_url, fake_openai), on_admin_key=keys.append)
    with run_asgi(app, lifespan="on") as base:
        client = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {keys[0]}"}, timeout=30
        )
        with client:
            conv = client.post("/v1/conversations", json={}).json()["id"]
            path = f"/v1/conversations/{conv}/messages"
            body = {"content": "slowly [[slow]] one two three four five six", "stream": True}
            headers = {"Idempotency-Key": "hang-up"}
            with client.stream("POST", path, json=body, headers=headers) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if line.startswith("event: message.delta"):
                        # still running: the key is held
                        busy = client.post(path, json={**body, "stream": False}, headers=headers)
                        assert busy.status_code == 409, busy.text
                        break
            # the client hung up; the server notices within moments and the key frees
            deadline = time.monotonic() + 5
            while True:
                retried = client.post(path, json={**body, "stream": False}, headers=headers)
                if retried.status_code != 409 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert retried.status_code == 201, retried.text
            stored = client.get(path, params={"limit": 100}).json()["data"]
            assert [m["role"] for m in stored] == ["user", "assistant"]
            assert stored[0]["id"] == retried.json()["message"]["id"]
