"""Fixtures for the CLI tests: the stub gateway on loopback and an isolated config dir."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from somaagent import Client
from somaagent.cli import main
from tests.fakes._server import run_asgi
from tests.sdk.stub_gateway import StubGateway

Invoke = Callable[..., Result]


@pytest.fixture(scope="session")
def _served_stub() -> Iterator[tuple[StubGateway, str]]:
    stub = StubGateway()
    with run_asgi(stub) as url:
        yield stub, url


@pytest.fixture
def stub(_served_stub: tuple[StubGateway, str]) -> StubGateway:
    """The stub gateway, emptied for this test."""
    _served_stub[0].reset()
    return _served_stub[0]


@pytest.fixture
def base_url(stub: StubGateway, _served_stub: tuple[StubGateway, str]) -> str:
    """The stub gateway's URL on loopback."""
    return _served_stub[1]


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private config dir (``SOMA_CONFIG_DIR``); no SomaAgent variables from the caller."""
    monkeypatch.delenv("SOMA_API_KEY", raising=False)
    monkeypatch.delenv("SOMA_BASE_URL", raising=False)
    path = tmp_path / "config" / "somaagent"
    monkeypatch.setenv("SOMA_CONFIG_DIR", str(path))
    return path


@pytest.fixture
def invoke(config_dir: Path) -> Invoke:
    """Run ``soma`` with arguments (and optional ``input``), returning click's result."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Result:
        return runner.invoke(main, list(args), input=input, catch_exceptions=True)

    return run


@pytest.fixture(autouse=True)
def _no_retry_waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The CLI's clients retry without really sleeping, so failing tests stay fast."""
    waits: list[float] = []
    monkeypatch.setattr(Client, "_sleep", lambda self, seconds: waits.append(seconds))
    return waits
