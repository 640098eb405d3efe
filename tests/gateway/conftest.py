"""Gateway fixtures: a real app on SQLite and on a throwaway PostgreSQL, its admin key,
and an OpenAI-wire fake upstream for the model calls."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from somaagent.accounts import keys
from somaagent.gateway.app import create_app
from somaagent.gateway.settings import Settings
from somaagent.gateway.state import GatewayState
from tests.pg import PostgresCluster, find_bindir, start_cluster

FAKE_MODEL = "gpt-4o-mini"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    if find_bindir() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed here")
    cluster = start_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'soma.db'}"
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database("t_" + secrets.token_hex(6))


@dataclass
class Gateway:
    """A started gateway app and an authenticated client for it."""

    app: FastAPI
    client: httpx.AsyncClient
    admin_key: str
    settings: Settings
    extra_clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def state(self) -> GatewayState:
        state: GatewayState = self.app.state.gateway
        return state

    async def new_key(
        self, *, tenant: str = "default", scope: str = "member", name: str = "t"
    ) -> str:
        async with self.state.sessions() as session:
            _, secret = await keys.create_key(session, name=name, tenant=tenant, scope=scope)
        return secret

    async def client_for(self, key: str) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://gateway",
            headers={"Authorization": f"Bearer {key}"},
        )
        self.extra_clients.append(client)
        return client


def make_settings(
    tmp_path: Path, database_url: str, fake_openai: Any, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "openai_base_url": fake_openai.base_url,
        "openai_api_key": fake_openai.api_key,
        "default_model": FAKE_MODEL,
        "rate_limit_per_minute": 0,
        "provider_timeout_s": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change the gateway's settings."""
    return {}


@pytest.fixture
def prepare_app() -> Callable[[FastAPI], None]:
    """Override in a test module to change the app before it starts (``app.state`` hooks)."""
    return lambda app: None


@pytest.fixture
async def gateway(
    tmp_path: Path,
    database_url: str,
    fake_openai: Any,
    settings_overrides: dict[str, Any],
    prepare_app: Callable[[FastAPI], None],
) -> AsyncIterator[Gateway]:
    admin: list[str] = []
    settings = make_settings(tmp_path, database_url, fake_openai, **settings_overrides)
    app = create_app(settings, on_admin_key=admin.append)
    prepare_app(app)
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://gateway",
            headers={"Authorization": f"Bearer {admin[0]}"},
        )
        gw = Gateway(app=app, client=client, admin_key=admin[0], settings=settings)
        try:
            yield gw
        finally:
            await client.aclose()
            for extra in gw.extra_clients:
                await extra.aclose()


@contextlib.asynccontextmanager
async def swapped_memory(
    gateway: Gateway, *, chunk_size: int = 48, store: Any = None
) -> AsyncIterator[Any]:
    """The app's memory service swapped for one on the test embedder and an exact store (or
    ``store``), for as long as the block runs; the original is put back after."""
    from somaagent.memory.chunking import Chunker
    from somaagent.memory.keyword import KeywordIndex
    from somaagent.memory.rag import RAGPipeline
    from somaagent.memory.service import MemoryService
    from tests.memory.rag_fakes import ExactStore, HashEmbedder

    pipeline = RAGPipeline(
        HashEmbedder(),
        store if store is not None else ExactStore(),
        KeywordIndex(gateway.settings.data_dir / "keyword"),
        chunker=Chunker(chunk_size=chunk_size, overlap=8),
    )
    service = MemoryService(gateway.state.sessions, pipeline)
    original = gateway.state.memory
    gateway.state.memory = service
    try:
        yield service
    finally:
        gateway.state.memory = original
        await service.aclose()
