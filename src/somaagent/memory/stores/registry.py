"""Store URLs to back-ends: :func:`create_store`, the one lazy-importing factory.

Built-in schemes are tried first, then the ``somaagent.vector_stores`` entry-point group, whose
entries are named by scheme and called as ``factory(url, **options)``::

    [project.entry-points."somaagent.vector_stores"]
    milvus = "somaagent_milvus:open_milvus"

The same convention as the embedders' :func:`somaagent.memory.embeddings.registry.create_embedder`.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from somaagent.errors import ConfigurationError
from somaagent.memory.stores.base import VectorStore

__all__ = ["ENTRY_POINT_GROUP", "create_store"]

ENTRY_POINT_GROUP: Final = "somaagent.vector_stores"
MEMORY: Final = ":memory:"


def _path_or_memory(url: str, scheme: str) -> str | None:
    """``None`` for ``scheme::memory:``, else the path of ``scheme:///path`` or ``scheme:path``."""
    rest = url[len(scheme) + 1 :]
    if rest == MEMORY:
        return None
    if rest.startswith("//"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ConfigurationError(
                f"{url!r}: a local {scheme} store takes a path ({scheme}:///abs/path); "
                f"for a server use {scheme}+http://host:port"
            )
        rest = parts.path
    if not rest:
        raise ConfigurationError(f"{url!r} names no path; use {scheme}:///abs/path")
    return str(Path(rest).expanduser())


def _chroma(url: str, options: dict[str, Any]) -> VectorStore:
    from somaagent.memory.stores.chroma import ChromaStore

    return ChromaStore(path=_path_or_memory(url, "chroma"), **options)


def _qdrant(url: str, options: dict[str, Any]) -> VectorStore:
    from somaagent.memory.stores.qdrant import QdrantStore

    if url.startswith(("qdrant+http://", "qdrant+https://")):
        parts = urlsplit(url[len("qdrant+") :])
        query = dict(parse_qsl(parts.query))
        options.setdefault("api_key", query.get("api_key"))
        server = f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")
        return QdrantStore(url=server, **options)
    return QdrantStore(path=_path_or_memory(url, "qdrant"), **options)


def _pinecone(url: str, options: dict[str, Any]) -> VectorStore:
    from somaagent.memory.stores.pinecone import PineconeStore

    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for key in ("api_key", "host", "namespace_prefix"):
        if key in query:
            options.setdefault(key, query[key])
    if parts.netloc and "host" not in options:
        options["host"] = parts.netloc
    return PineconeStore(**options)


def _pgvector(url: str, options: dict[str, Any]) -> VectorStore:
    from somaagent.memory.stores.pgvector import PgVectorStore

    dsn = url[len("pgvector+") :]
    if dsn.startswith("postgresql+"):  # a SQLAlchemy-style driver suffix means nothing here
        dsn = "postgresql" + dsn[dsn.index(":") :]
    return PgVectorStore(dsn=dsn, **options)


_BUILTIN: Final[dict[str, Callable[[str, dict[str, Any]], VectorStore]]] = {
    "chroma": _chroma,
    "qdrant": _qdrant,
    "qdrant+http": _qdrant,
    "qdrant+https": _qdrant,
    "pinecone": _pinecone,
    "pgvector+postgresql": _pgvector,
    "pgvector+postgres": _pgvector,
}


def _scheme(url: str) -> str:
    scheme = url.split(":", 1)[0].lower()
    if scheme.startswith("pgvector+postgresql+"):
        return "pgvector+postgresql"
    return scheme


def create_store(url: str, **options: Any) -> VectorStore:
    """Open a vector store from a URL, importing only the back-end it names.

    =================================== ==============================================
    url                                 back-end
    =================================== ==============================================
    ``chroma:///abs/path``              ChromaDB embedded, persistent (the default)
    ``chroma::memory:``                 ChromaDB in memory (tests)
    ``qdrant::memory:``                 Qdrant local mode, in memory
    ``qdrant:///abs/path``              Qdrant local mode, persistent
    ``qdrant+http://host:6333``         a Qdrant server (``+https`` too; ``api_key=``)
    ``pinecone://?api_key=..&host=..``  a Pinecone index (serverless or pod) by host
    ``pgvector+postgresql://u@h/db``    PostgreSQL with the ``vector`` extension
    =================================== ==============================================

    Args:
        url: the store URL; a scheme not built in is looked up in the
            ``somaagent.vector_stores`` entry-point group.
        **options: back-end keyword options (e.g. ``api_key``, ``timeout``).

    Returns:
        The opened store (connections are made lazily, on first use).

    Raises:
        ConfigurationError: unknown scheme, malformed URL, or the back-end's extra is not
            installed (the message names it).
    """
    if ":" not in url:
        raise ConfigurationError(
            f"{url!r} is not a vector-store URL; try chroma:///path, qdrant::memory:, "
            "qdrant+http://host:6333, pinecone://?host=..., pgvector+postgresql://..."
        )
    scheme = _scheme(url)
    builtin = _BUILTIN.get(scheme)
    if builtin is not None:
        return builtin(url, dict(options))
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == scheme:
            store = entry.load()(url, **options)
            if not isinstance(store, VectorStore):
                raise ConfigurationError(f"the {scheme!r} plugin did not return a VectorStore")
            return store
    known = ", ".join(sorted({name.split("+")[0] for name in _BUILTIN}))
    raise ConfigurationError(
        f"unknown vector store {scheme!r} in {url!r} (built in: {known}; others come from the "
        f"{ENTRY_POINT_GROUP!r} entry-point group)"
    )
