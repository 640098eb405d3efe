"""The ``soma`` group: version, help, and the lazily loaded server commands."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

import somaagent
from tests.cli.conftest import Invoke


def test_version(invoke: Invoke) -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"soma, version {somaagent.__version__}"


def test_help_lists_every_command(invoke: Invoke) -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("admin", "auth", "chat", "conversations", "login", "logout", "serve"):
        assert command in result.stdout
    assert result.stdout.startswith("Usage: soma ")


def test_an_unknown_command_is_a_usage_error(invoke: Invoke) -> None:
    assert invoke("frobnicate").exit_code == 2


def _fail_import(missing: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake(name: str, package: str | None = None) -> ModuleType:
        if name == "somaagent.cli.serve":
            raise ModuleNotFoundError(f"No module named {missing!r}", name=missing)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", fake)


def test_serve_without_the_server_extra_names_it(
    invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail_import("uvicorn", monkeypatch)
    result = invoke("serve", "--port", "9000")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: `soma serve` needs the server extra (uvicorn is missing): "
        "pip install 'somaagent[server]'\n"
    )
    assert "needs the server extra" in invoke("--help").stdout


def test_a_missing_command_module_names_the_extra(
    invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail_import("somaagent.cli.serve", monkeypatch)
    result = invoke("serve")
    assert result.exit_code == 1
    assert "pip install 'somaagent[server]'" in result.stderr


def test_serve_and_admin_load_when_installed(invoke: Invoke) -> None:
    assert invoke("serve", "--help").exit_code == 0
    assert invoke("admin", "--help").exit_code == 0
