"""A real gateway process for the crash and scale-out tests (``python -m`` this module).

It serves the real app under uvicorn on ``--port``. Its memory embeds with the hashing test
embedder, made slow (``SLOW_EMBED_S`` per call) so a run can be killed mid-way, over the
persistent embedded ChromaDB store (or, with ``--shared-dir``, a store and keyword index
that several processes share), and it appends one JSON line per embedded text to
``<data dir>/embedded.log`` (``pid`` and text), flushed and fsynced: what a process embedded
survives its ``kill -9``. The first admin key goes to ``<data dir>/admin.key``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import uvicorn

from somaagent.memory.embeddings.base import InputType, Vectors
from tests.memory.rag_fakes import ExactStore, HashEmbedder

SLOW_EMBED_S = float(os.environ.get("SOMA_TEST_SLOW_EMBED_S", "0.15"))


class LoggedEmbedder(HashEmbedder):
    """The hashing embedder, slowed down, logging every text it embedded."""

    def __init__(self, log: Path) -> None:
        super().__init__(dimension=64)
        self.log = log

    async def embed(self, texts: Sequence[str], *, input_type: InputType = "document") -> Vectors:
        await asyncio.sleep(SLOW_EMBED_S)
        vectors = await super().embed(texts, input_type=input_type)
        if input_type == "document":
            with self.log.open("a", encoding="utf-8") as out:
                for text in texts:
                    out.write(json.dumps({"pid": os.getpid(), "text": text}) + "\n")
                out.flush()
                os.fsync(out.fileno())
        return vectors


class SharedFileStore(ExactStore):
    """The exact test store kept in one pickle file under a file lock, so several gateway
    processes share one vector store (as they would share Qdrant or pgvector)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    @contextlib.contextmanager
    def _locked(self, write: bool) -> Iterator[None]:
        with (self.path.parent / (self.path.name + ".lock")).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.collections = pickle.loads(self.path.read_bytes()) if self.path.exists() else {}
            yield
            if write:
                self.path.write_bytes(pickle.dumps(self.collections))


def _shared(name: str, write: bool) -> Any:
    method = getattr(ExactStore, name)

    async def call(self: SharedFileStore, *args: Any, **kwargs: Any) -> Any:
        with self._locked(write):
            return await method(self, *args, **kwargs)

    return call


for _name, _write in (
    ("create_collection", True),
    ("delete_collection", True),
    ("list_collections", False),
    ("get_collection", False),
    ("upsert", True),
    ("get", False),
    ("delete", True),
    ("search", False),
    ("count", False),
):
    setattr(SharedFileStore, _name, _shared(_name, _write))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--shared-dir", type=Path, help="share the vector store and keyword index")
    args = parser.parse_args()

    from somaagent.gateway.app import create_app
    from somaagent.gateway.settings import Settings
    from somaagent.memory.chunking import Chunker
    from somaagent.memory.keyword import KeywordIndex
    from somaagent.memory.rag import RAGPipeline
    from somaagent.memory.service import MemoryService
    from somaagent.memory.stores.registry import create_store

    data_dir: Path = args.data_dir
    settings = Settings(
        data_dir=data_dir,
        database_url=args.database_url,
        rate_limit_per_minute=0,
        fault_injection=False,
    )

    def remember_key(secret: str) -> None:
        (data_dir / "admin.key").write_text(secret)

    app = create_app(settings, on_admin_key=remember_key)

    def memory(settings: Any, sessions: Any) -> MemoryService:
        shared: Path | None = args.shared_dir
        store = (
            SharedFileStore(shared / "vectors.pickle")
            if shared
            else create_store("chroma://" + str(data_dir / "vectors"))
        )
        pipeline = RAGPipeline(
            LoggedEmbedder(data_dir / "embedded.log"),
            store,
            KeywordIndex((shared or data_dir) / "keyword"),
            chunker=Chunker(chunk_size=400, overlap=0),
        )
        return MemoryService(sessions, pipeline)

    app.state.memory_factory = memory
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
