"""The memory API's wire models, shared by the gateway, the RAG pipeline and the SDK.

Requests forbid unknown fields (a typo is a 422 naming it); responses ignore them, so an older
SDK keeps working against a newer gateway. This module imports only pydantic and the standard
library, so the SDK and the CLI can use it without the server extra.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "COLLECTION_NAME_PATTERN",
    "DOCUMENT_ID_PATTERN",
    "RESERVED_METADATA",
    "Collection",
    "CollectionCreate",
    "ContextChunk",
    "ContextSource",
    "DocumentFailure",
    "DocumentIn",
    "DocumentInfo",
    "DocumentsCreate",
    "Embedding",
    "EmbeddingList",
    "EmbeddingUsage",
    "IndexResult",
    "MessageHit",
    "RAGContext",
    "RetrieveRequest",
    "SearchHitPublic",
    "SearchRequest",
    "SearchResults",
]

COLLECTION_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""A collection's name: what the API and the CLI call it (``/v1/memory/collections/{name}``)."""
DOCUMENT_ID_PATTERN = r"^[^\x00-\x1f\x7f]{1,256}$"
"""A document's id: 1-256 printable characters (paths like ``guide/install.md`` included)."""
RESERVED_METADATA = frozenset(
    {"document_id", "chunk_index", "char_start", "char_end", "headings", "source"}
)
"""Metadata keys the index sets on every chunk; a document's own metadata cannot use them."""
MAX_DOCUMENTS = 1000

Scalar = str | int | float | bool
Metadata = dict[str, Scalar]
TextFormat = Literal["markdown", "text"]
SearchMode = Literal["vector", "keyword", "hybrid"]
FusionMethod = Literal["rrf", "weighted"]
FilterBody = dict[str, Any]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore")


# -- collections ------------------------------------------------------------------------------


class CollectionCreate(_Request):
    """A new collection of documents."""

    name: str = Field(pattern=COLLECTION_NAME_PATTERN, description="unique per tenant")
    description: str = Field(default="", max_length=2000)
    metadata: Metadata = Field(default_factory=dict)


class Collection(_Response):
    """A collection and its stats.

    Attributes:
        name: its name (the ``{id}`` of its URLs).
        embedding_model: the model its vectors come from.
        dimension: the vectors' length.
        document_count: documents indexed in it.
        chunk_count: chunks (vectors) indexed in it.
    """

    name: str
    description: str = ""
    metadata: Metadata = Field(default_factory=dict)
    embedding_model: str
    dimension: int
    metric: str = "cosine"
    document_count: int = 0
    chunk_count: int = 0
    created_at: datetime
    updated_at: datetime


# -- documents --------------------------------------------------------------------------------


class DocumentIn(_Request):
    """One document to index.

    ``id`` defaults to ``source`` when given, else to a hash of the text; indexing a document
    with an id the collection already has replaces that document (its old chunks go).
    """

    id: str | None = Field(default=None, pattern=DOCUMENT_ID_PATTERN)
    text: str = Field(description="the document's text; Markdown or plain")
    source: str | None = Field(default=None, max_length=1000, description="a path or URL")
    metadata: Metadata = Field(default_factory=dict)
    format: TextFormat = "markdown"


class DocumentsCreate(_Request):
    """Documents to index in one request (JSON; files go as multipart ``files``)."""

    documents: list[DocumentIn] = Field(min_length=1, max_length=MAX_DOCUMENTS)
    force: bool = Field(default=False, description="re-index documents whose content is unchanged")


class DocumentInfo(_Response):
    """A document in a collection's registry."""

    id: str
    source: str | None = None
    content_hash: str
    chunk_count: int
    size: int = Field(default=0, description="characters of text")
    metadata: Metadata = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime


class DocumentFailure(_Response):
    """A document that was not stored, and the state it left.

    Attributes:
        state: ``unchanged`` (the previous version, if any, is intact), ``removed`` (the
            document is no longer in the collection) or ``unknown`` (the back-end failed while
            writing it and could not be cleaned up; index it again).
    """

    id: str
    error: str
    state: Literal["unchanged", "removed", "unknown"] = "unchanged"


class IndexResult(_Response):
    """What an index request did: the documents stored, skipped as unchanged, and failed."""

    indexed: list[DocumentInfo] = Field(default_factory=list)
    unchanged: list[DocumentInfo] = Field(default_factory=list)
    failed: list[DocumentFailure] = Field(default_factory=list)
    chunk_count: int = 0


# -- search and retrieval ---------------------------------------------------------------------


class _Query(_Request):
    query: str = Field(min_length=1, max_length=10_000)
    filter: FilterBody | None = Field(
        default=None, description='metadata filter, e.g. {"topic": {"eq": "bio"}}'
    )
    mode: SearchMode = "hybrid"
    fusion: FusionMethod = "rrf"
    alpha: float = Field(default=0.5, ge=0.0, le=1.0, description="vector weight (weighted)")
    rrf_k: int = Field(default=60, ge=1, le=10_000)


class SearchRequest(_Query):
    """A search of one collection."""

    k: int = Field(default=10, ge=1, le=100)


class SearchHitPublic(_Response):
    """One chunk found by a search.

    Attributes:
        score: in [0, 1]; for ``hybrid`` the fused score, else the side's own.
        vector_score: the vector store's normalised similarity, if the vector side found it.
        keyword_score: the raw BM25 score, if the keyword side found it.
    """

    id: str
    document_id: str
    chunk_index: int
    text: str
    score: float
    source: str | None = None
    headings: list[str] = Field(default_factory=list)
    char_start: int | None = None
    char_end: int | None = None
    metadata: Metadata = Field(default_factory=dict)
    vector_score: float | None = None
    keyword_score: float | None = None


class SearchResults(_Response):
    """A search's hits, best first."""

    data: list[SearchHitPublic]
    query: str
    mode: SearchMode
    fusion: FusionMethod | None = None


class RetrieveRequest(_Query):
    """Retrieve context for a prompt, within a token budget."""

    k: int = Field(default=5, ge=1, le=100)
    token_budget: int = Field(default=4000, ge=16, le=1_000_000)
    model: str | None = Field(
        default=None, max_length=200, description="count tokens as this model does"
    )


class ContextSource(_Response):
    """A document the context cites, numbered as the context cites it (``[1]``...)."""

    number: int
    document_id: str
    source: str | None = None

    @property
    def label(self) -> str:
        """What to show for it: its source, else its id."""
        return self.source or self.document_id


class ContextChunk(SearchHitPublic):
    """A chunk in a retrieved context, with the number of the source it cites."""

    source_number: int = 0


class RAGContext(_Response):
    """Retrieved context, formatted for a prompt.

    Attributes:
        chunks: the chunks in the context, best first, with scores and sources.
        sources: the documents they come from, numbered as cited in ``context``.
        context: the formatted text to put in a prompt.
        token_count: tokens of ``context``.
        token_budget: the budget it was built within.
        truncated: whether chunks were left out or cut to fit the budget.
    """

    query: str
    collection: str
    chunks: list[ContextChunk] = Field(default_factory=list)
    sources: list[ContextSource] = Field(default_factory=list)
    context: str = ""
    token_count: int = 0
    token_budget: int
    truncated: bool = False


class MessageHit(_Response):
    """A stored conversation message found by :meth:`RAGPipeline.search_conversations`."""

    message_id: str
    conversation_id: str
    role: str
    text: str
    score: float
    created_at: float | None = None


# -- embeddings (OpenAI's format) -------------------------------------------------------------


class Embedding(_Response):
    """One input's vector (a list of floats, or base64 of little-endian float32 bytes)."""

    object: str = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(_Response):
    """Tokens in the inputs."""

    prompt_tokens: int = 0
    total_tokens: int = 0


class EmbeddingList(_Response):
    """The answer to ``POST /v1/embeddings``, as OpenAI gives it."""

    object: str = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage = Field(default_factory=EmbeddingUsage)
