"""`soma admin keys` works on the configured database directly, without a server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from somaagent.cli.admin import admin


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("SOMA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SOMA_DATABASE_URL", raising=False)
    return CliRunner()


def test_create_list_revoke(runner: CliRunner, tmp_path: Path) -> None:
    created = runner.invoke(
        admin, ["keys", "create", "--name", "ci", "--tenant", "acme", "--scope", "admin", "--json"]
    )
    assert created.exit_code == 0, created.output
    info = json.loads(created.output)
    assert info["key"].startswith("soma_sk_")
    assert info["tenant"] == "acme"
    assert info["scope"] == "admin"
    assert (tmp_path / "data" / "soma.db").exists()

    listed = runner.invoke(admin, ["keys", "list", "--json"])
    rows = json.loads(listed.output)
    assert [r["name"] for r in rows] == ["ci"]
    assert info["key"] not in listed.output  # the secret is never listed
    assert rows[0]["revoked_at"] is None

    revoked = runner.invoke(admin, ["keys", "revoke", info["id"], "--json"])
    assert revoked.exit_code == 0, revoked.output
    assert json.loads(revoked.output)["revoked_at"] is not None


def test_created_key_authenticates_against_the_gateway(runner: CliRunner, tmp_path: Path) -> None:
    import anyio
    import httpx

    from somaagent.gateway.app import create_app
    from somaagent.gateway.settings import Settings

    out = runner.invoke(admin, ["keys", "create", "--name", "boot", "--tenant", "t1", "--json"])
    secret = json.loads(out.output)["key"]

    async def check() -> dict[str, str]:
        app = create_app(Settings(data_dir=tmp_path / "data"), on_admin_key=lambda _: None)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://g") as client:
                r = await client.get("/v1/me", headers={"Authorization": f"Bearer {secret}"})
                result: dict[str, str] = r.json()
                return result

    me = anyio.run(check)
    assert me["tenant"] == "t1"
    assert me["scope"] == "member"


def test_bad_scope_and_tenant_are_usage_errors(runner: CliRunner) -> None:
    bad_scope = runner.invoke(admin, ["keys", "create", "--name", "x", "--scope", "root"])
    assert bad_scope.exit_code == 2
    bad_tenant = runner.invoke(admin, ["keys", "create", "--name", "x", "--tenant", "a b/c"])
    assert bad_tenant.exit_code != 0
    assert "tenant" in bad_tenant.output


def test_revoking_unknown_key_fails_clearly(runner: CliRunner) -> None:
    result = runner.invoke(admin, ["keys", "revoke", "key_nope"])
    assert result.exit_code == 1
    assert "no API key" in result.output


def test_budget_set_shown_and_removed(runner: CliRunner) -> None:
    created = runner.invoke(admin, ["keys", "create", "--name", "b", "--budget", "12.5", "--json"])
    info = json.loads(created.output)
    assert info["monthly_budget_usd"] == 12.5
    changed = runner.invoke(admin, ["keys", "budget", info["id"], "3", "--json"])
    assert json.loads(changed.output)["monthly_budget_usd"] == 3.0
    removed = runner.invoke(admin, ["keys", "budget", info["id"], "--none", "--json"])
    assert json.loads(removed.output)["monthly_budget_usd"] is None
    assert runner.invoke(admin, ["keys", "budget", info["id"]]).exit_code == 2
    negative = runner.invoke(admin, ["keys", "budget", info["id"], "--", "-1"])
    assert negative.exit_code == 1
    assert "budget" in negative.output


@pytest.mark.parametrize("columns", ["30", "80", "200"])
def test_the_key_table_never_cuts_an_id(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, columns: str
) -> None:
    name = "a key with a rather long name that asks for room"
    created = runner.invoke(admin, ["keys", "create", "--name", name, "--json"])
    key_id = json.loads(created.output)["id"]
    monkeypatch.setenv("COLUMNS", columns)
    listed = runner.invoke(admin, ["keys", "list"])  # piped: not a terminal
    assert listed.exit_code == 0, listed.output
    assert key_id in listed.output and name in listed.output
    assert listed.output.count("…") == 1  # only the secret's prefix is elided


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_the_key_table_never_cuts_an_id_in_a_narrow_terminal(
    runner: CliRunner, tmp_path: Path
) -> None:
    import pty

    created = runner.invoke(admin, ["keys", "create", "--name", "narrow", "--json"])
    key_id = json.loads(created.output)["id"]
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "40", "LINES": "20", "TERM": "xterm-256color"}
    code = "import sys; from somaagent.cli import main; sys.exit(main())"
    with subprocess.Popen(
        [sys.executable, "-c", code, "admin", "keys", "list"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
    ) as process:
        os.close(follower)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=30) == 0, b"".join(chunks).decode(errors="replace")
    os.close(leader)
    assert key_id in b"".join(chunks).decode(errors="replace")
