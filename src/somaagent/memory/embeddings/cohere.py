"""Cohere v3 embeddings (``embed-english-v3.0``, ``-multilingual-``, ``-light-``) over httpx.

Wire format (API v2): ``POST {base_url}/v2/embed`` with ``{"model", "texts": [...],
"input_type": "search_document" | "search_query", "embedding_types": ["float"],
"truncate": "END"}``; the answer's ``embeddings.float`` holds one row per text, in order. v3
models embed queries and documents differently, so ``input_type`` matters (and keys the cache).
Cohere takes at most 96 texts per request, the default batch size here.
"""

from __future__ import annotations

from typing import Any, Final

from somaagent.errors import ConfigurationError
from somaagent.memory.embeddings._remote import RemoteEmbedder
from somaagent.memory.embeddings.base import InputType

__all__ = ["MODELS", "CohereEmbedder"]

MODELS: Final[dict[str, int]] = {
    "embed-english-v3.0": 1024,
    "embed-multilingual-v3.0": 1024,
    "embed-english-light-v3.0": 384,
    "embed-multilingual-light-v3.0": 384,
}
_INPUT_TYPES: Final[dict[str, str]] = {"document": "search_document", "query": "search_query"}


class CohereEmbedder(RemoteEmbedder):
    """Cohere's embed API v2 (see the module docstring).

    Args:
        model: the model name (default ``embed-english-v3.0``).
        dimension: the vector size of a model not in :data:`MODELS`.
        **options: see :class:`RemoteEmbedder` (``api_key`` defaults to ``CO_API_KEY``;
            ``batch_size`` to 96, Cohere's limit).
    """

    provider = "cohere"
    key_env = "CO_API_KEY"
    default_base_url = "https://api.cohere.com"
    input_types_differ = True

    def __init__(
        self, model: str = "embed-english-v3.0", *, dimension: int | None = None, **options: Any
    ) -> None:
        size = MODELS.get(model, dimension or 0)
        if not size:
            raise ConfigurationError(
                f"unknown Cohere embedding model {model!r}: pass dimension= (its vector size)"
            )
        options.setdefault("batch_size", 96)
        super().__init__(model, dimension=size, **options)

    async def _request(self, texts: list[str], input_type: InputType) -> Any:
        body = {
            "model": self.name,
            "texts": texts,
            "input_type": _INPUT_TYPES[input_type],
            "embedding_types": ["float"],
            "truncate": "END",
        }
        answer = await self._post("/v2/embed", body)
        embeddings = answer.get("embeddings") if isinstance(answer, dict) else None
        rows = embeddings.get("float") if isinstance(embeddings, dict) else embeddings
        if not isinstance(rows, list):
            raise self._bad("the answer has no embeddings.float list", body=answer)
        if len(rows) != len(texts):
            missing = list(range(len(rows), len(texts)))
            raise self._bad(
                f"the answer has {len(rows)} vectors for {len(texts)} texts", items=missing
            )
        return rows
