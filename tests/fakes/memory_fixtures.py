"""Pytest plugin: the memory fakes (Pinecone data plane, OpenAI and Cohere embeddings).

Each fake runs under a real uvicorn on loopback for the whole session; fixtures yield a
:class:`MemoryFake` with ``base_url``, ``api_key`` and the fake itself (its request log and
fault switches). Register with ``pytest_plugins = ["tests.fakes.memory_fixtures"]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes._server import run_asgi

__all__ = [
    "MemoryFake",
    "fake_cohere",
    "fake_openai_embeddings",
    "fake_pinecone",
    "local_model_dir",
]


@dataclass(frozen=True)
class MemoryFake:
    """A running fake: point a client at ``base_url`` with ``api_key``; ``fake`` is its state."""

    base_url: str
    api_key: str
    fake: Any


@pytest.fixture(scope="session")
def fake_pinecone() -> Iterator[MemoryFake]:
    """A Pinecone index's data plane on loopback (dimension 8, cosine); the SDK's ``host``."""
    from tests.fakes.pinecone_server import FakePinecone

    fake = FakePinecone(dimension=8, metric="cosine")
    with run_asgi(fake.app) as url:
        yield MemoryFake(base_url=url, api_key=fake.api_key, fake=fake)


@pytest.fixture(scope="session")
def fake_openai_embeddings() -> Iterator[MemoryFake]:
    """OpenAI's ``/v1/embeddings`` on loopback (``base_url`` ends in ``/v1``)."""
    from tests.fakes.openai_embeddings import FakeOpenAIEmbeddings

    fake = FakeOpenAIEmbeddings()
    with run_asgi(fake.app) as url:
        yield MemoryFake(base_url=f"{url}/v1", api_key=fake.api_key, fake=fake)


@pytest.fixture(scope="session")
def fake_cohere() -> Iterator[MemoryFake]:
    """Cohere's ``/v2/embed`` on loopback."""
    from tests.fakes.cohere_server import FakeCohere

    fake = FakeCohere()
    with run_asgi(fake.app) as url:
        yield MemoryFake(base_url=url, api_key=fake.api_key, fake=fake)


@pytest.fixture(scope="session")
def local_model_dir(request: pytest.FixtureRequest) -> Path:
    """A data dir that keeps the built ONNX model between test runs (in pytest's cache)."""
    return Path(request.config.cache.mkdir("somaagent-models"))
