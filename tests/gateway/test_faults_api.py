"""``/v1/admin/faults``: the gateway's fault points through the real app.

Faults put on a point change what the gateway's own callers see: a slower or failing memory
search, a model call that fails down the fallback chain, embeddings that fail; and they show
in ``/metrics``. Only an operator's admin key may touch them, and only when fault injection is
on. The memory here is the fast hashing embedder over an exact in-memory store (installed
before start-up, so the gateway wraps it like its default Chroma + MiniLM).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from somaagent.gateway.settings import Settings
from somaagent.memory.chunking import Chunker
from somaagent.memory.keyword import KeywordIndex
from somaagent.memory.rag import RAGPipeline
from somaagent.memory.service import MemoryService
from tests.gateway.conftest import FAKE_MODEL, Gateway
from tests.memory.rag_fakes import ExactStore, HashEmbedder

pytestmark = pytest.mark.anyio


def _memory(settings: Settings, sessions: Any) -> MemoryService:
    pipeline = RAGPipeline(
        HashEmbedder(),
        ExactStore(),
        KeywordIndex(settings.data_dir / "keyword"),
        chunker=Chunker(chunk_size=48, overlap=8),
    )
    return MemoryService(sessions, pipeline)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the fault points do not touch the database."""
    return f"sqlite+aiosqlite:///{tmp_path / 'soma.db'}"


@pytest.fixture
def prepare_app() -> Callable[[FastAPI], None]:
    """The test memory, installed before start-up so the gateway wraps it."""

    def prepare(app: FastAPI) -> None:
        app.state.memory_factory = _memory

    return prepare


async def _collection(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/memory/collections", json={"name": "kb"})).status_code == 201
    docs = {"documents": [{"text": "Refunds take five working days.", "source": "refunds.md"}]}
    response = await client.post("/v1/memory/collections/kb/documents", json=docs)
    assert response.status_code == 201, response.text


async def _search(client: httpx.AsyncClient) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    response = await client.post("/v1/memory/collections/kb/search", json={"query": "refunds"})
    return response, time.perf_counter() - start


async def test_points_are_listed_clear_at_first(gateway: Gateway) -> None:
    response = await gateway.client.get("/v1/admin/faults")
    assert response.status_code == 200
    points = response.json()
    assert [p["name"] for p in points] == ["vector-store", "embedder", "model"]
    assert all(p["fault"] is None and p["hits"] == 0 for p in points)


async def test_vector_store_latency_slows_memory_requests_until_cleared(gateway: Gateway) -> None:
    client = gateway.client
    await _collection(client)
    response, fast = await _search(client)
    assert response.status_code == 200 and response.json()["data"]

    put = await client.put(
        "/v1/admin/faults/vector-store",
        json={"latency_ms": 150, "ttl_s": 60, "experiment": "memory-gateway-latency"},
    )
    assert put.status_code == 200, put.text
    shown = put.json()
    assert shown["fault"]["latency_ms"] == 150 and shown["fault"]["experiment"]
    response, slow = await _search(client)
    assert response.status_code == 200 and response.json()["data"]  # slower, still right
    assert slow >= 0.15 > fast
    assert (await client.get("/v1/admin/faults/vector-store")).json()["hits"] >= 1

    assert (await client.delete("/v1/admin/faults/vector-store")).status_code == 204
    response, after = await _search(client)
    assert response.status_code == 200 and after < 0.15
    assert (await client.get("/v1/admin/faults/vector-store")).json()["fault"] is None


async def test_an_aborting_vector_store_is_a_503_problem(gateway: Gateway) -> None:
    client = gateway.client
    await _collection(client)
    await client.put("/v1/admin/faults/vector-store", json={"abort": True})
    response, _ = await _search(client)
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith(":vector-store-unavailable")
    assert "fault injected" in response.json()["detail"]
    await client.delete("/v1/admin/faults")
    assert (await _search(client))[0].status_code == 200


async def test_a_failing_model_fails_the_chat_cleanly(gateway: Gateway) -> None:
    client = gateway.client
    body = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "hello"}]}
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    await client.put("/v1/admin/faults/model", json={"abort": True, "experiment": "slm"})
    failed = await client.post("/v1/chat/completions", json=body)
    assert failed.status_code == 503
    assert "fault injected by slm" in failed.json()["detail"]
    streamed = await client.post("/v1/chat/completions", json={**body, "stream": True})
    # failing before its first token, a stream is a real error status (issue 14), no [DONE]
    assert streamed.status_code == 503
    assert "fault injected by slm" in streamed.json()["detail"]
    assert "[DONE]" not in streamed.text
    await client.delete("/v1/admin/faults/model")
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200


async def test_embedder_faults_reach_the_embeddings_endpoint(gateway: Gateway) -> None:
    client = gateway.client
    body = {"model": "all-MiniLM-L6-v2", "input": "hello"}
    assert (await client.post("/v1/embeddings", json=body)).status_code == 200
    await client.put("/v1/admin/faults/embedder", json={"abort": True})
    failed = await client.post("/v1/embeddings", json=body)
    assert failed.status_code >= 500 and "fault injected" in failed.json()["detail"]


async def test_faults_show_in_metrics(gateway: Gateway) -> None:
    client = gateway.client
    await _collection(client)
    metrics = (await client.get("/metrics")).text
    assert 'soma_chaos_fault_active{point="vector-store"} 0.0' in metrics
    await client.put("/v1/admin/faults/vector-store", json={"latency_ms": 1})
    await _search(client)
    metrics = (await client.get("/metrics")).text
    assert 'soma_chaos_fault_active{point="vector-store"} 1.0' in metrics
    assert 'soma_chaos_fault_effects_total{effect="delayed",point="vector-store"}' in metrics


async def test_a_fault_clears_itself_after_its_ttl(gateway: Gateway) -> None:
    client = gateway.client
    await _collection(client)
    await client.put("/v1/admin/faults/vector-store", json={"abort": True, "ttl_s": 0.3})
    assert (await _search(client))[0].status_code == 503
    await asyncio.sleep(0.35)
    assert (await _search(client))[0].status_code == 200
    assert (await client.get("/v1/admin/faults/vector-store")).json()["fault"] is None


async def test_bad_faults_and_points_are_named(gateway: Gateway) -> None:
    client = gateway.client
    bad = await client.put("/v1/admin/faults/vector-store", json={"latency_ms": -5})
    assert bad.status_code == 422
    assert ["body", "latency_ms"] in [e["loc"] for e in bad.json()["errors"]]
    unknown = await client.put("/v1/admin/faults/database", json={"abort": True})
    assert unknown.status_code == 404 and "vector-store, embedder, model" in unknown.text
    typo = await client.put("/v1/admin/faults/model", json={"abort": True, "latncy_ms": 5})
    assert typo.status_code == 422 and "latncy_ms" in typo.text


async def test_only_an_operators_admin_key_may_set_faults(gateway: Gateway) -> None:
    member = await gateway.client_for(await gateway.new_key(scope="member"))
    tenant_admin = await gateway.client_for(await gateway.new_key(tenant="acme", scope="admin"))
    for client in (member, tenant_admin):
        response = await client.put("/v1/admin/faults/model", json={"abort": True})
        assert response.status_code == 403
        assert (await client.get("/v1/admin/faults")).status_code == 403
    assert "default tenant" in (await tenant_admin.get("/v1/admin/faults")).text
    nobody = httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway.app), base_url="http://g")
    async with nobody:
        assert (await nobody.get("/v1/admin/faults")).status_code == 401
    assert (await gateway.client.get("/v1/admin/faults/model")).json()["fault"] is None


@pytest.mark.parametrize("settings_overrides", [{"fault_injection": False}])
async def test_fault_injection_off_means_403_and_nothing_wrapped(gateway: Gateway) -> None:
    response = await gateway.client.put("/v1/admin/faults/model", json={"abort": True})
    assert response.status_code == 403 and "SOMA_FAULT_INJECTION=true" in response.text
    state = gateway.state
    assert state.faults is None
    assert type(state.memory.pipeline.store).__name__ == "ExactStore"
    assert state.pool.wrap is None


def test_fault_injection_follows_the_mode() -> None:
    assert Settings(mode="local").fault_points_enabled
    assert not Settings(
        mode="production", database_url="postgresql+asyncpg://u@h/db"
    ).fault_points_enabled
    assert Settings(
        mode="production", database_url="postgresql+asyncpg://u@h/db", fault_injection=True
    ).fault_points_enabled
