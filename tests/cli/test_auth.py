"""``soma login``, ``soma logout`` and ``soma auth status``."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest

from tests.cli.conftest import Invoke
from tests.sdk.stub_gateway import ALICE_KEY, BOB_KEY


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_login_writes_a_private_credentials_file(
    invoke: Invoke, base_url: str, config_dir: Path
) -> None:
    result = invoke("login", "--base-url", base_url, "--api-key", ALICE_KEY)
    assert result.exit_code == 0, result.output
    assert "tenant acme" in result.stdout
    path = config_dir / "credentials.json"
    assert _mode(path) == 0o600
    assert _mode(config_dir) == 0o700
    assert json.loads(path.read_text()) == {"api_key": ALICE_KEY, "base_url": base_url}


def test_login_prompts_for_the_key_without_echoing_it(
    invoke: Invoke, base_url: str, config_dir: Path
) -> None:
    result = invoke("login", "--base-url", base_url, input=ALICE_KEY + "\n")
    assert result.exit_code == 0, result.output
    assert "API key" in result.output
    assert ALICE_KEY not in result.output
    assert (config_dir / "credentials.json").exists()


def test_login_refuses_a_bad_key_and_saves_nothing(
    invoke: Invoke, base_url: str, config_dir: Path
) -> None:
    result = invoke("login", "--base-url", base_url, "--api-key", "soma_sk_wrong")
    assert result.exit_code == 4
    assert result.stderr.startswith("error: the gateway at")
    assert result.stderr.count("\n") == 1
    assert not (config_dir / "credentials.json").exists()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_login_no_verify_saves_without_asking_the_gateway(invoke: Invoke, config_dir: Path) -> None:
    url = _closed_port_url()
    result = invoke("login", "--base-url", url, "--api-key", "soma_sk_unchecked", "--no-verify")
    assert result.exit_code == 0, result.output
    assert json.loads((config_dir / "credentials.json").read_text())["base_url"] == url


def test_login_fixes_the_mode_of_an_existing_file(
    invoke: Invoke, base_url: str, config_dir: Path
) -> None:
    config_dir.mkdir(parents=True)
    path = config_dir / "credentials.json"
    path.write_text("{}")
    path.chmod(0o644)
    assert invoke("login", "--base-url", base_url, "--api-key", ALICE_KEY).exit_code == 0
    assert _mode(path) == 0o600


def test_login_over_an_unreadable_file_works(
    invoke: Invoke, base_url: str, config_dir: Path
) -> None:
    config_dir.mkdir(parents=True)
    (config_dir / "credentials.json").write_text("not json")
    assert invoke("chat", "hi").exit_code == 1  # the broken file is an error...
    result = invoke("login", "--base-url", base_url, "--api-key", ALICE_KEY)
    assert result.exit_code == 0, result.output  # ...that logging in again repairs


def test_logout_removes_the_file(invoke: Invoke, base_url: str, config_dir: Path) -> None:
    invoke("login", "--base-url", base_url, "--api-key", ALICE_KEY)
    result = invoke("logout")
    assert result.exit_code == 0
    assert not (config_dir / "credentials.json").exists()
    assert invoke("logout").exit_code == 0  # logging out twice is fine


def test_status_names_the_config_file(invoke: Invoke, base_url: str) -> None:
    invoke("login", "--base-url", base_url, "--api-key", ALICE_KEY)
    result = invoke("auth", "status")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"{base_url} (from the config file)" in out
    assert "soma_sk_test… (from the config file)" in out
    assert ALICE_KEY not in out
    assert "acme" in out and "member" in out


def test_status_environment_beats_the_file(
    invoke: Invoke, base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoke("login", "--base-url", base_url, "--api-key", ALICE_KEY)
    monkeypatch.setenv("SOMA_API_KEY", BOB_KEY)
    result = invoke("auth", "status", "--json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["key_source"] == "environment"
    assert status["base_url_source"] == "config file"
    assert status["identity"]["tenant"] == "globex"
    assert BOB_KEY not in result.stdout
    assert BOB_KEY.startswith(status["key_prefix"].rstrip("…"))
    text = invoke("auth", "status").stdout
    assert "(from the environment (SOMA_API_KEY))" in text


def test_status_option_beats_the_environment(
    invoke: Invoke, base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOMA_API_KEY", BOB_KEY)
    monkeypatch.setenv("SOMA_BASE_URL", base_url)
    result = invoke("--api-key", ALICE_KEY, "auth", "status", "--json")
    status = json.loads(result.stdout)
    assert status["key_source"] == "option"
    assert status["base_url_source"] == "environment"
    assert status["identity"]["tenant"] == "acme"


def test_status_without_a_key_exits_4(invoke: Invoke) -> None:
    result = invoke("auth", "status")
    assert result.exit_code == 4
    assert "API key: none" in result.stdout
    assert result.stderr == (
        "error: not logged in: run `soma login`, set SOMA_API_KEY, or pass --api-key\n"
    )


def test_status_with_a_refused_key_exits_4(invoke: Invoke, base_url: str) -> None:
    result = invoke("--base-url", base_url, "--api-key", "soma_sk_revoked", "auth", "status")
    assert result.exit_code == 4
    assert "refused" in result.stderr


def test_status_with_an_unreachable_gateway_exits_1(invoke: Invoke) -> None:
    result = invoke("--base-url", _closed_port_url(), "--api-key", ALICE_KEY, "auth", "status")
    assert result.exit_code == 1
    assert "could not reach" in result.stderr
    assert "Gateway:" in result.stdout
