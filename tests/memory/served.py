"""A real gateway with the memory routes, served on loopback, for the SDK and CLI tests.

Its memory embeds with the hashing test embedder over an exact in-memory store (through the
app's ``memory_factory`` seam), so the tests need no model files and run fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fakes._server import run_asgi
from tests.fakes.fixtures import FakeVendor
from tests.memory.rag_fakes import ExactStore, HashEmbedder

MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class Running:
    """A served gateway: where it is and its first admin key."""

    base_url: str
    admin_key: str


@contextmanager
def serve_gateway(data_dir: Path, fake_openai: FakeVendor) -> Iterator[Running]:
    """Serve a gateway on SQLite in ``data_dir`` with ``/v1/memory`` and ``/v1/embeddings``."""
    from somaagent.gateway.app import create_app
    from somaagent.gateway.settings import Settings
    from somaagent.memory.chunking import Chunker
    from somaagent.memory.keyword import KeywordIndex
    from somaagent.memory.rag import RAGPipeline
    from somaagent.memory.service import MemoryService

    settings = Settings(
        data_dir=data_dir,
        database_url=f"sqlite+aiosqlite:///{data_dir / 'soma.db'}",
        openai_base_url=fake_openai.base_url,
        openai_api_key=fake_openai.api_key,
        default_model=MODEL,
        rate_limit_per_minute=0,
        provider_timeout_s=5.0,
    )
    admin: list[str] = []
    app = create_app(settings, on_admin_key=admin.append)

    def factory(settings: Settings, sessions: Any) -> MemoryService:
        pipeline = RAGPipeline(
            HashEmbedder(),
            ExactStore(),
            KeywordIndex(data_dir / "keyword"),
            chunker=Chunker(chunk_size=64, overlap=8),
        )
        return MemoryService(sessions, pipeline)

    app.state.memory_factory = factory
    with run_asgi(app, lifespan="on") as url:
        yield Running(base_url=url, admin_key=admin[0])
