"""What indexing takes and reports: documents, per-document outcomes, progress.

Shared by :mod:`somaagent.memory.rag` and the gateway; only the standard library and the
filter types.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from somaagent.errors import SomaAgentError, ValidationError
from somaagent.memory.chunking import TextFormat
from somaagent.memory.filters import Scalar
from somaagent.memory.schemas import RESERVED_METADATA

__all__ = [
    "Document",
    "FailedDocument",
    "FailureState",
    "IndexProgress",
    "IndexReport",
    "IndexedDocument",
    "ProgressCallback",
    "check_documents",
]

FailureState = Literal["unchanged", "removed", "unknown"]


@dataclass(frozen=True, slots=True)
class Document:
    """A document to index.

    Attributes:
        id: its id in the collection; indexing the same id again replaces it.
        text: its text.
        source: where it came from (a path or URL), kept on every chunk.
        metadata: flat scalar metadata for filters (not the reserved chunk keys).
        format: ``markdown`` (headings and code fences are structure) or ``text``.
    """

    id: str
    text: str
    source: str | None = None
    metadata: Mapping[str, Scalar] = field(default_factory=dict)
    format: TextFormat = "markdown"

    @property
    def content_hash(self) -> str:
        """SHA-256 of everything that goes into the index (text, source, metadata, format)."""
        canonical = json.dumps(
            [self.text, self.source, dict(sorted(self.metadata.items())), self.format],
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class IndexedDocument:
    """A document that was stored, with its chunk count and content hash."""

    id: str
    source: str | None
    content_hash: str
    chunk_count: int


@dataclass(frozen=True, slots=True)
class FailedDocument:
    """A document that was not stored.

    Attributes:
        id: the document's id.
        error: why.
        state: ``unchanged`` (its previous version, if any, is intact), ``removed`` (it is no
            longer in the collection), or ``unknown`` (a write failed and the clean-up too).
    """

    id: str
    error: str
    state: FailureState = "unchanged"


@dataclass(slots=True)
class IndexReport:
    """What :meth:`RAGPipeline.index_documents` did.

    Attributes:
        indexed: the documents stored, in input order.
        failed: the documents not stored.
        error: the first failure, to re-raise when the caller wants an exception.
    """

    indexed: list[IndexedDocument] = field(default_factory=list)
    failed: list[FailedDocument] = field(default_factory=list)
    error: SomaAgentError | None = None

    @property
    def chunk_count(self) -> int:
        """Chunks written for the stored documents."""
        return sum(d.chunk_count for d in self.indexed)


@dataclass(frozen=True, slots=True)
class IndexProgress:
    """Progress of an indexing run, reported after each batch."""

    documents_done: int
    documents_total: int
    chunks_done: int
    failed: int


ProgressCallback = Callable[[IndexProgress], None]


def check_documents(documents: Sequence[Document]) -> None:
    """Raise a :class:`ValidationError` naming every invalid document (nothing is written).

    Invalid: no documents at all, an empty or duplicate id, empty or binary text, metadata
    keys the index reserves for itself.
    """
    if not documents:
        raise ValidationError(
            "no documents to index",
            errors=[{"loc": ["documents"], "msg": "empty", "type": "value_error"}],
        )
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, doc in enumerate(documents):
        if not doc.id:
            errors.append(_error(index, "id", "a document id cannot be empty"))
        elif doc.id in seen:
            errors.append(_error(index, "id", f"duplicate document id {doc.id!r}"))
        seen.add(doc.id)
        if not doc.text.strip():
            errors.append(_error(index, "text", f"document {doc.id!r} is empty"))
        elif "\x00" in doc.text:
            errors.append(_error(index, "text", f"document {doc.id!r} is binary (NUL bytes)"))
        reserved = sorted(RESERVED_METADATA & set(doc.metadata))
        if reserved:
            names = ", ".join(reserved)
            message = f"metadata keys {names} are set by the index; rename them"
            errors.append(_error(index, "metadata", message))
    if errors:
        detail = "; ".join(f"documents[{e['loc'][1]}]: {e['msg']}" for e in errors[:5])
        raise ValidationError(f"invalid documents, nothing was indexed: {detail}", errors=errors)


def _error(index: int, field_name: str, message: str) -> dict[str, Any]:
    return {"loc": ["documents", index, field_name], "msg": message, "type": "value_error"}
