"""Fixtures for the memory tests (shared by parts A and B)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

# Nothing in these tests may reach a model hub: the local model's files come from a wheel.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from somaagent.memory.stores.base import VectorStore
from tests.fakes.memory_fixtures import (  # noqa: F401 - fixtures, until tests/conftest.py registers the plugin
    fake_cohere,
    fake_openai_embeddings,
    fake_pinecone,
    local_model_dir,
)
from tests.memory import _stores


@pytest.fixture
def anyio_backend() -> str:
    """Run ``@pytest.mark.anyio`` tests on asyncio (the gateway's loop)."""
    return "asyncio"


@pytest.fixture(scope="session")
def pgvector_cluster() -> Iterator[object]:
    """A throwaway PostgreSQL with pgvector for the session, or the reason there is none."""
    with _stores.postgres_with_vector() as cluster:
        yield cluster


@pytest.fixture(params=_stores.BACKENDS)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: str
) -> AsyncIterator[VectorStore]:
    """A fresh, empty store of each back-end in turn (the contract suite's subject)."""
    backend = str(request.param)
    servers: dict[str, object] = {}
    if backend == "pinecone":
        servers["pinecone"] = request.getfixturevalue("fake_pinecone").base_url
    if backend == "pgvector":
        servers["pgvector"] = request.getfixturevalue("pgvector_cluster")
    opened = _stores.open_store(backend, tmp_path, servers)
    try:
        yield opened
    finally:
        await opened.aclose()
