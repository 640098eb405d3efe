"""Store URLs: built-in schemes, plugins, misuse errors; persistence of the embedded stores."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from somaagent.errors import ConfigurationError
from somaagent.memory.stores import VectorRecord, create_store
from somaagent.memory.stores.chroma import ChromaStore
from somaagent.memory.stores.pgvector import PgVectorStore
from somaagent.memory.stores.pinecone import PineconeStore
from somaagent.memory.stores.qdrant import QdrantStore


def test_urls_pick_backends(tmp_path: Path) -> None:
    chroma = create_store(f"chroma://{tmp_path}/c")
    assert isinstance(chroma, ChromaStore) and chroma.path == f"{tmp_path}/c"
    assert isinstance(create_store("chroma::memory:"), ChromaStore)
    assert create_store("qdrant::memory:").backend == "qdrant"
    local = create_store(f"qdrant://{tmp_path}/q")
    assert isinstance(local, QdrantStore) and local.path == f"{tmp_path}/q"
    server = create_store("qdrant+http://localhost:6333?api_key=k")
    assert isinstance(server, QdrantStore)
    assert (server.url, server.api_key) == ("http://localhost:6333", "k")
    pinecone = create_store("pinecone://?api_key=k&host=https://i-abc.svc.pinecone.io")
    assert isinstance(pinecone, PineconeStore) and pinecone.host == "https://i-abc.svc.pinecone.io"
    pg = create_store("pgvector+postgresql+asyncpg://u@db:5432/soma")
    assert isinstance(pg, PgVectorStore) and pg.dsn == "postgresql://u@db:5432/soma"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nothing", "not a vector-store URL"),
        ("milvus://host", "unknown vector store 'milvus'"),
        ("chroma://remote-host/path", "takes a path"),
        ("pinecone://?api_key=k", "index host"),
    ],
)
def test_misuse_says_how_to_fix_it(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        create_store(url)


@pytest.mark.anyio
async def test_a_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "qdrant_client", None)
    with pytest.raises(ConfigurationError, match=r"somaagent\[qdrant\]"):
        await create_store("qdrant::memory:").list_collections()


@pytest.mark.anyio
@pytest.mark.parametrize("scheme", ["chroma", "qdrant"])
async def test_embedded_stores_persist(scheme: str, tmp_path: Path) -> None:
    url = f"{scheme}://{tmp_path / scheme}"
    async with create_store(url) as store:
        await store.create_collection("kept", dimension=4, metadata={"k": "v"})
        await store.upsert("kept", [VectorRecord(id="a", vector=[1, 0, 0, 0], document="doc")])
    async with create_store(url) as reopened:
        info = await reopened.get_collection("kept")
        assert (info.count, info.metadata) == (1, {"k": "v"})
        (record,) = await reopened.get("kept", ["a"])
        assert record.document == "doc"
        np.testing.assert_allclose(np.asarray(record.vector), [1, 0, 0, 0])
