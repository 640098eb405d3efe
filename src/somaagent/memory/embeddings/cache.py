"""A persistent embedding cache: an :class:`Embedder` that wraps another one.

Vectors are keyed by the model (provider, name, dimension, and the input type for models that
embed queries and documents differently) and the SHA-256 of the text, and kept in one SQLite
file under the data directory, so re-indexing unchanged text costs no model call. SQLite runs in
worker threads; WAL mode lets several processes share the file.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import anyio.to_thread
import numpy as np

from somaagent.errors import EmbeddingError
from somaagent.memory.embeddings.base import Embedder, InputType, Vectors, check_texts

__all__ = ["CachedEmbedder", "default_cache_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    model TEXT NOT NULL,
    digest BLOB NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model, digest)
) WITHOUT ROWID
"""
_CHUNK = 500  # SQLite's default limit on host parameters is 999 (older builds)


def default_cache_path(data_dir: Path | None = None) -> Path:
    """``<data_dir>/embeddings/cache.sqlite3``; the user cache directory without a data dir."""
    if data_dir is None:
        import platformdirs

        return Path(platformdirs.user_cache_dir("somaagent")) / "embeddings" / "cache.sqlite3"
    return Path(data_dir) / "embeddings" / "cache.sqlite3"


class CachedEmbedder(Embedder):
    """Serve repeated texts from a persistent cache and send only the misses to ``inner``.

    Args:
        inner: the embedder to cache.
        path: the SQLite file (default :func:`default_cache_path` of ``data_dir``); ``":memory:"``
            keeps the cache in memory.
        data_dir: SomaAgent's data directory.

    Attributes:
        hits: texts served from the cache so far.
        misses: texts sent to the model so far.
    """

    def __init__(
        self, inner: Embedder, *, path: Path | str | None = None, data_dir: Path | None = None
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self.provider = inner.provider
        self.input_types_differ = inner.input_types_differ
        self.path = str(path) if path is not None else str(default_cache_path(data_dir))
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            if self.path != ":memory:":
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            db.commit()
            self._db = db
        return self._db

    def _key(self, input_type: InputType) -> str:
        kind = f":{input_type}" if self.input_types_differ else ""
        return f"{self.provider}:{self.name}:{self.dimension}{kind}"

    def _lookup(self, key: str, digests: list[bytes]) -> dict[bytes, bytes]:
        found: dict[bytes, bytes] = {}
        with self._lock:
            db = self._connect()
            for start in range(0, len(digests), _CHUNK):
                part = digests[start : start + _CHUNK]
                marks = ",".join("?" * len(part))
                sql = (
                    f"SELECT digest, vector FROM embeddings WHERE model = ? AND digest IN ({marks})"
                )
                rows = db.execute(sql, [key, *part])
                found.update((bytes(digest), bytes(vector)) for digest, vector in rows)
        return found

    def _store(self, key: str, rows: list[tuple[bytes, bytes]]) -> None:
        with self._lock:
            db = self._connect()
            db.executemany(
                "INSERT OR REPLACE INTO embeddings (model, digest, vector) VALUES (?, ?, ?)",
                [(key, digest, vector) for digest, vector in rows],
            )
            db.commit()

    async def embed(self, texts: Sequence[str], *, input_type: InputType = "document") -> Vectors:
        """Embed ``texts``, from the cache where possible (see :meth:`Embedder.embed`)."""
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        check_texts(texts, provider=self.provider)
        key = self._key(input_type)
        digests = [hashlib.sha256(text.encode("utf-8")).digest() for text in texts]
        found = await anyio.to_thread.run_sync(self._lookup, key, list(set(digests)))
        missing: dict[bytes, list[int]] = {}
        for index, digest in enumerate(digests):
            blob = found.get(digest)
            if blob is not None and len(blob) == 4 * self.dimension:
                out[index] = np.frombuffer(blob, dtype=np.float32)
            else:
                missing.setdefault(digest, []).append(index)
        self.hits += len(texts) - sum(len(where) for where in missing.values())
        if missing:
            order = list(missing)
            firsts = [missing[digest][0] for digest in order]
            try:
                fresh = await self.inner.embed([texts[i] for i in firsts], input_type=input_type)
            except EmbeddingError as exc:
                items = sorted(i for item in exc.items for i in missing[order[item]])
                raise EmbeddingError(
                    exc.message,
                    provider=exc.provider,
                    items=items,
                    status_code=exc.status_code,
                    body=exc.body,
                    retry_after=exc.retry_after,
                ) from exc
            self.misses += len(order)
            for row, digest in enumerate(order):
                out[missing[digest]] = fresh[row]
            rows = [(digest, fresh[row].tobytes()) for row, digest in enumerate(order)]
            await anyio.to_thread.run_sync(self._store, key, rows)
        return out

    async def aclose(self) -> None:
        """Close the cache file and the wrapped embedder."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
        await self.inner.aclose()
