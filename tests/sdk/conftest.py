"""Fixtures for the SDK tests: the stub gateway, served for real on loopback, and clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from somaagent import AsyncClient, Client
from tests.fakes._server import run_asgi
from tests.sdk.stub_gateway import ALICE_KEY, StubGateway


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _clean_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Tests never see the developer's own SomaAgent settings, nor ``soma login``'s file."""
    for name in ("SOMA_API_KEY", "SOMA_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SOMA_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))


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
def sleeps() -> list[float]:
    """The retry waits the clients made (their sleep is replaced, so tests stay fast)."""
    return []


@pytest.fixture
def client(base_url: str, sleeps: list[float], monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """A sync client of the stub over real HTTP, recording its retry waits."""
    with Client(api_key=ALICE_KEY, base_url=base_url) as client:
        monkeypatch.setattr(client, "_sleep", sleeps.append)
        yield client


@pytest.fixture
async def async_client(
    stub: StubGateway, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AsyncClient]:
    """An async client of the stub through ``httpx.ASGITransport``, recording retry waits."""

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=stub))
    async with AsyncClient(api_key=ALICE_KEY, base_url="http://stub", http_client=http) as client:
        monkeypatch.setattr(client, "_sleep", record)
        yield client


@pytest.fixture
async def live_async_client(
    base_url: str, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AsyncClient]:
    """An async client of the stub over real HTTP (for streaming as it arrives)."""

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    async with AsyncClient(api_key=ALICE_KEY, base_url=base_url) as client:
        monkeypatch.setattr(client, "_sleep", record)
        yield client
