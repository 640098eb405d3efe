"""Nothing lost or duplicated under concurrency, on SQLite and PostgreSQL (issue 14).

* (concurrent sends to one conversation: ``test_concurrent_sends.py``)
* concurrent indexing into one collection: every document listed once, its chunks searchable;
* concurrent label moves: the label ends on one of the versions, every move answered 200.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import Gateway, swapped_memory

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
async def memory(gateway: Gateway) -> Any:
    async with swapped_memory(gateway) as service:
        yield service


async def test_concurrent_indexing_into_one_collection(gateway: Gateway, memory: Any) -> None:
    client = gateway.client
    assert (await client.post("/v1/memory/collections", json={"name": "kb"})).status_code == 201

    async def index(i: int) -> httpx.Response:
        document = {"id": f"doc-{i % 15}", "text": f"topic{i % 15} fact number {i % 15} here"}
        return await client.post(
            "/v1/memory/collections/kb/documents", json={"documents": [document]}
        )

    responses = await asyncio.gather(*(index(i) for i in range(30)))  # 15 ids, each twice
    assert {r.status_code for r in responses} <= {200, 201, 409}, [r.text for r in responses]
    listed = (await client.get("/v1/memory/collections/kb/documents", params={"limit": 100})).json()
    ids = [d["id"] for d in listed["data"]]
    assert sorted(ids) == sorted(f"doc-{i}" for i in range(15))
    info = (await client.get("/v1/memory/collections/kb")).json()
    assert info["document_count"] == 15
    assert info["chunk_count"] == sum(d["chunk_count"] for d in listed["data"])
    for i in range(15):
        body = {"query": f"topic{i}", "mode": "keyword", "k": 5}
        hits = (await client.post("/v1/memory/collections/kb/search", json=body)).json()["data"]
        assert [h["document_id"] for h in hits if f"topic{i} " in h["text"]] == [f"doc-{i}"]


async def test_concurrent_label_moves(gateway: Gateway) -> None:
    client = gateway.client
    versions = []
    for n in range(5):
        body = {
            "name": "greet",
            "role": "user",
            "body": f"hello v{n} {{{{ who }}}}",
            "variables": [{"name": "who"}],
        }
        made = await client.post("/v1/prompts", json=body)
        assert made.status_code in (200, 201), made.text
        versions.append(made.json()["version"])

    async def move(version: int) -> httpx.Response:
        return await client.put("/v1/prompts/greet/labels/production", json={"version": version})

    responses = await asyncio.gather(*(move(v) for _ in range(6) for v in versions))
    assert {r.status_code for r in responses} <= {200, 409}, [r.text for r in responses]
    assert any(r.status_code == 200 for r in responses)
    got = await client.get("/v1/prompts/greet", params={"label": "production"})
    assert got.status_code == 200, got.text
    assert got.json()["version"] in versions
    rendered = await client.post(
        "/v1/prompts/greet:production/render", json={"variables": {"who": "x"}}
    )
    assert rendered.status_code == 200, rendered.text
