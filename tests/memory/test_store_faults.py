"""A back-end that is down is a typed 503 (VectorStoreError naming it), never a foreign error."""

from __future__ import annotations

import socket

import pytest

from somaagent.errors import VectorStoreError
from somaagent.memory.stores import create_store
from tests.fakes.memory_fixtures import MemoryFake

pytestmark = pytest.mark.anyio


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "url",
    [
        "qdrant+http://127.0.0.1:{port}",
        "pgvector+postgresql://postgres@127.0.0.1:{port}/soma",
        "pinecone://?api_key=pclocal&host=http://127.0.0.1:{port}",
    ],
)
async def test_unreachable_backends_are_vector_store_errors(url: str) -> None:
    for module in ("qdrant_client", "asyncpg", "pinecone"):
        if module.split("_")[0] in url:
            pytest.importorskip(module)
    store = create_store(url.format(port=closed_port()), timeout=2)
    try:
        with pytest.raises(VectorStoreError) as caught:
            await store.list_collections()
    finally:
        await store.aclose()
    assert caught.value.status_code == 503
    assert caught.value.backend == store.backend


async def test_a_failing_pinecone_answer_is_a_vector_store_error(fake_pinecone: MemoryFake) -> None:
    store = create_store(
        f"pinecone://?api_key=pclocal&host={fake_pinecone.base_url}&namespace_prefix=faults-"
    )
    try:
        await store.create_collection("down", dimension=8)
        fake_pinecone.fake.fail_next = 400
        with pytest.raises(VectorStoreError, match="pinecone"):
            await store.search("down", [1.0] * 8)
    finally:
        fake_pinecone.fake.fail_next = None
        await store.aclose()
