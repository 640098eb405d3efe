"""Workflow fixtures: the real gateway (its DBOS engine on SQLite or a throwaway PostgreSQL)
whose memory embeds with the fast hashing test embedder, and helpers to follow a run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.gateway.conftest import (  # noqa: F401  (fixtures)
    Gateway,
    anyio_backend,
    database_url,
    gateway,
    pg_cluster,
    settings_overrides,
)
from tests.memory.rag_fakes import ExactStore, HashEmbedder


@pytest.fixture(autouse=True)
def _fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    # The queue and event streams are polled; a short interval keeps the tests quick.
    monkeypatch.setenv("SOMA_WORKFLOW_POLLING_INTERVAL_S", "0.05")
    monkeypatch.setenv("SOMA_WORKFLOW_MAINTENANCE_INTERVAL_S", "0.5")


def memory_factory(data_dir: Path, embedder: HashEmbedder | None = None) -> Callable[..., Any]:
    """An app ``memory_factory``: the hashing embedder over an exact in-memory store."""

    def factory(settings: Any, sessions: Any) -> Any:
        from somaagent.memory.chunking import Chunker
        from somaagent.memory.keyword import KeywordIndex
        from somaagent.memory.rag import RAGPipeline
        from somaagent.memory.service import MemoryService

        pipeline = RAGPipeline(
            embedder or HashEmbedder(),
            ExactStore(),
            KeywordIndex(data_dir / "keyword"),
            chunker=Chunker(chunk_size=64, overlap=8),
        )
        return MemoryService(sessions, pipeline)

    return factory


@pytest.fixture
def embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture
def prepare_app(tmp_path: Path, embedder: HashEmbedder) -> Callable[[FastAPI], None]:
    def prepare(app: FastAPI) -> None:
        app.state.memory_factory = memory_factory(tmp_path / "data", embedder)

    return prepare


def documents(count: int, prefix: str = "doc") -> list[dict[str, Any]]:
    return [
        {"id": f"{prefix}-{i}", "text": f"# {prefix} {i}\n\nFact number {i} about topic {i % 5}."}
        for i in range(count)
    ]


async def follow(client: httpx.AsyncClient, run_id: str, **params: Any) -> list[dict[str, Any]]:
    """Every event of a run until it finishes, from its SSE stream."""
    events: list[dict[str, Any]] = []
    headers = params.pop("headers", {})
    async with client.stream(
        "GET", f"/v1/workflow-runs/{run_id}/events", params=params, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200, await response.aread()
        ids: list[str] = []
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                ids.append(line[4:])
            elif line.startswith("data: "):
                event = json.loads(line[6:])
                assert str(event["seq"]) == ids[-1]
                events.append(event)
    return events


async def wait_finished(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    """The run once it has finished: its event stream to the end, then its status (polled
    briefly: the stream's last event is written just before the engine records the outcome)."""
    await follow(client, run_id)
    for _ in range(200):
        response = await client.get(f"/v1/workflow-runs/{run_id}")
        assert response.status_code == 200, response.text
        if response.json()["status"] in ("succeeded", "failed", "cancelled"):
            break
        await asyncio.sleep(0.05)
    return dict(response.json())


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    yield gateway.client
