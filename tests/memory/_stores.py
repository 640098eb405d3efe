"""Open each vector-store back-end for the contract suite, or say why it cannot be had here.

Every factory returns a fresh, empty store. The servers behind them (a throwaway PostgreSQL with
the ``vector`` extension, the local Pinecone stand-in) live for the whole test session.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from somaagent.memory.stores import Metric, VectorStore, create_store
from tests import pg

BACKENDS = ["chroma", "qdrant", "pinecone", "pgvector"]
PINECONE_DIMENSION = 8  # the stand-in index's dimension, used by the contract tests
PINECONE_METRIC: Metric = "cosine"

StoreFactory = Callable[..., VectorStore]


def _need(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (the `{extra}` extra)")


def pgvector_available(cluster: pg.PostgresCluster) -> str | None:
    """``None`` when ``CREATE EXTENSION vector`` works on the cluster, else the reason."""
    try:
        cluster.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except Exception as exc:
        return (
            "the PostgreSQL server has no pgvector extension (apt-get install "
            f"postgresql-<version>-pgvector): {str(exc).strip()[:200]}"
        )
    return None


def _pgserver_bindir() -> Path | None:
    """The PostgreSQL binaries (with pgvector) that the ``pgserver`` wheel ships, if installed."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.origin:
        return None
    bindir = Path(spec.origin).parent / "pginstall" / "bin"
    return bindir if (bindir / "initdb").exists() else None


@contextlib.contextmanager
def _bindir(bindir: Path | None) -> Iterator[None]:
    saved = os.environ.get("SOMA_TEST_PG_BINDIR")
    if bindir is not None and saved is None:
        os.environ["SOMA_TEST_PG_BINDIR"] = str(bindir)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("SOMA_TEST_PG_BINDIR", None)


@contextlib.contextmanager
def postgres_with_vector() -> Iterator[pg.PostgresCluster | str]:
    """A throwaway cluster with pgvector, or the reason there is none.

    Prefers ``SOMA_TEST_PG_BINDIR``, then the ``pgserver`` wheel's binaries (PostgreSQL 16 with
    pgvector 0.6), then the system's PostgreSQL (which needs ``postgresql-<v>-pgvector``).
    """
    with _bindir(_pgserver_bindir()):
        if pg.find_bindir() is None:
            yield "no PostgreSQL server binaries found (pip install pgserver, or apt postgresql)"
            return
        try:
            cluster = pg.start_cluster()
        except Exception as exc:  # pragma: no cover - depends on the machine
            yield f"PostgreSQL did not start: {exc}"
            return
    try:
        reason = pgvector_available(cluster)
        yield reason or cluster
    finally:
        cluster.stop()


def open_store(backend: str, tmp_path: Path, servers: dict[str, object]) -> VectorStore:
    """A fresh store of ``backend``; skips with the reason when it cannot be had."""
    if backend == "chroma":
        _need("chromadb", "server")
        return create_store(f"chroma://{tmp_path / 'chroma'}")
    if backend == "qdrant":
        _need("qdrant_client", "qdrant")
        return create_store("qdrant::memory:")
    if backend == "pinecone":
        _need("pinecone", "pinecone")
        url = servers["pinecone"]
        assert isinstance(url, str)
        # each test gets its own namespace prefix, so tests never see each other's collections
        prefix = f"t{uuid.uuid4().hex[:8]}-"
        return create_store(f"pinecone://?api_key=pclocal&host={url}&namespace_prefix={prefix}")
    if backend == "pgvector":
        _need("asyncpg", "pgvector")
        _need("pgvector", "pgvector")
        cluster = servers["pgvector"]
        if isinstance(cluster, str):
            pytest.skip(cluster)
        assert isinstance(cluster, pg.PostgresCluster)
        database = f"v{uuid.uuid4().hex[:12]}"
        cluster.execute(f'CREATE DATABASE "{database}"')
        return create_store(f"pgvector+{cluster.url(database, driver='asyncpg')}")
    raise AssertionError(backend)
