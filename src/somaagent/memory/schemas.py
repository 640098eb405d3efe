"""The memory API's wire models; they live in :mod:`somaagent.types.memory` (the SDK needs them
without the server extra) and are re-exported here under their old names.
"""

from __future__ import annotations

from somaagent.types.memory import (
    COLLECTION_NAME_PATTERN as COLLECTION_NAME_PATTERN,
)
from somaagent.types.memory import (
    DOCUMENT_ID_PATTERN as DOCUMENT_ID_PATTERN,
)
from somaagent.types.memory import (
    MAX_DOCUMENTS as MAX_DOCUMENTS,
)
from somaagent.types.memory import (
    RESERVED_METADATA as RESERVED_METADATA,
)
from somaagent.types.memory import (
    Collection as Collection,
)
from somaagent.types.memory import (
    CollectionCreate as CollectionCreate,
)
from somaagent.types.memory import (
    ContextChunk as ContextChunk,
)
from somaagent.types.memory import (
    ContextSource as ContextSource,
)
from somaagent.types.memory import (
    DocumentFailure as DocumentFailure,
)
from somaagent.types.memory import (
    DocumentIn as DocumentIn,
)
from somaagent.types.memory import (
    DocumentInfo as DocumentInfo,
)
from somaagent.types.memory import (
    DocumentsCreate as DocumentsCreate,
)
from somaagent.types.memory import (
    Embedding as Embedding,
)
from somaagent.types.memory import (
    EmbeddingList as EmbeddingList,
)
from somaagent.types.memory import (
    EmbeddingUsage as EmbeddingUsage,
)
from somaagent.types.memory import (
    FilterBody as FilterBody,
)
from somaagent.types.memory import (
    FusionMethod as FusionMethod,
)
from somaagent.types.memory import (
    IndexResult as IndexResult,
)
from somaagent.types.memory import (
    MessageHit as MessageHit,
)
from somaagent.types.memory import (
    Metadata as Metadata,
)
from somaagent.types.memory import (
    RAGContext as RAGContext,
)
from somaagent.types.memory import (
    RetrieveRequest as RetrieveRequest,
)
from somaagent.types.memory import (
    Scalar as Scalar,
)
from somaagent.types.memory import (
    SearchHitPublic as SearchHitPublic,
)
from somaagent.types.memory import (
    SearchMode as SearchMode,
)
from somaagent.types.memory import (
    SearchRequest as SearchRequest,
)
from somaagent.types.memory import (
    SearchResults as SearchResults,
)
from somaagent.types.memory import (
    TextFormat as TextFormat,
)

__all__ = [
    "COLLECTION_NAME_PATTERN",
    "DOCUMENT_ID_PATTERN",
    "MAX_DOCUMENTS",
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
    "FilterBody",
    "FusionMethod",
    "IndexResult",
    "MessageHit",
    "Metadata",
    "RAGContext",
    "RetrieveRequest",
    "Scalar",
    "SearchHitPublic",
    "SearchMode",
    "SearchRequest",
    "SearchResults",
    "TextFormat",
]
