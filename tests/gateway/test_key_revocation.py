"""A revoked key stops working: on the very next request when the gateway's own process
revoked it, and within the key cache's documented bound (``auth.CACHE_SECONDS``) when another
process did (``soma admin keys revoke`` on the database, as an operator does, or a replica).

A real gateway under uvicorn on SQLite; the revocations are the real CLI command, in this
process and in a process of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from somaagent.cli import main
from somaagent.gateway import auth
from tests.sre._prometheus import ServedGateway, serve_gateway
from tests.sre.conftest import gateway_settings


@pytest.fixture
def gateway(
    tmp_path: Path, fake_openai: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServedGateway]:
    data = tmp_path / "gw"
    # `soma admin` works on the database the settings name: the gateway's own
    monkeypatch.setenv("SOMA_DATA_DIR", str(data))
    monkeypatch.delenv("SOMA_DATABASE_URL", raising=False)
    with serve_gateway(gateway_settings(data, fake_openai)) as served:
        yield served


def _new_key(name: str) -> tuple[str, str]:
    created = CliRunner().invoke(
        main, ["admin", "keys", "create", "--name", name, "--scope", "member", "--json"]
    )
    assert created.exit_code == 0, created.output
    body = json.loads(created.stdout)
    return body["id"], body["key"]


def _me(gateway: ServedGateway, key: str) -> int:
    response = httpx.get(
        f"{gateway.url}/v1/me", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    return response.status_code


def test_a_key_revoked_in_the_gateways_process_fails_on_the_next_request(
    gateway: ServedGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an hour's cache: only the revocation itself, not the clock, can end the cached entry
    monkeypatch.setattr(auth, "CACHE_SECONDS", 3600.0)
    key_id, key = _new_key("ci")
    assert _me(gateway, key) == 200  # verified, and now cached
    revoked = CliRunner().invoke(main, ["admin", "keys", "revoke", key_id, "--json"])
    assert revoked.exit_code == 0, revoked.output
    assert _me(gateway, key) == 401  # the very next request, though the cache held the key
    _, other = _new_key("other")
    assert _me(gateway, other) == 200  # the dropped cache refills for keys still valid


def test_a_key_revoked_by_another_process_fails_within_the_cache_bound(
    gateway: ServedGateway,
) -> None:
    key_id, key = _new_key("ci")
    assert _me(gateway, key) == 200
    code = "from somaagent.cli import main; main()"
    revoked = subprocess.run(
        [sys.executable, "-c", code, "admin", "keys", "revoke", key_id],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert revoked.returncode == 0, revoked.stderr
    # Another process's revocation reaches this gateway only through the database, once the
    # cached entry is older than the bound; past it, the key must be refused.
    time.sleep(auth.CACHE_SECONDS)
    assert _me(gateway, key) == 401


def test_the_cache_bound_is_the_documented_one() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert auth.CACHE_SECONDS == 1.0
    assert "within 1 s" in readme
