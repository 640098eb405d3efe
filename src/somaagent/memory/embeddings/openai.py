"""OpenAI embeddings (``text-embedding-3-small``, ``-3-large``, ``ada-002``) over httpx.

Wire format: ``POST {base_url}/embeddings`` with ``{"model", "input": [...],
"encoding_format": "base64", "dimensions"?}``; the answer's ``data[i].embedding`` is a base64
string of little-endian float32 (what OpenAI's own SDK asks for: a third of the JSON size), or a
list of floats from compatible servers that ignore ``encoding_format``. Rows are placed by their
``index``. ``dimensions`` shortens the -3 models' vectors (OpenAI re-normalises them).
Any OpenAI-compatible server works with ``base_url`` (and ``dimension=`` for its model).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

import numpy as np

from somaagent.errors import ConfigurationError
from somaagent.memory.embeddings._remote import RemoteEmbedder
from somaagent.memory.embeddings.base import InputType

__all__ = ["MODELS", "OpenAIEmbedder"]

# model -> (native dimension, whether it accepts ``dimensions``)
MODELS: Final[dict[str, tuple[int, bool]]] = {
    "text-embedding-3-small": (1536, True),
    "text-embedding-3-large": (3072, True),
    "text-embedding-ada-002": (1536, False),
}


class OpenAIEmbedder(RemoteEmbedder):
    """OpenAI's embeddings API (see the module docstring).

    Args:
        model: the model name (default ``text-embedding-3-small``).
        dimensions: shorter vectors for the -3 models (1 to the native size).
        dimension: the vector size of a model not in :data:`MODELS` (compatible servers).
        **options: see :class:`RemoteEmbedder` (``api_key`` defaults to ``OPENAI_API_KEY``).
    """

    provider = "openai"
    key_env = "OPENAI_API_KEY"
    default_base_url = "https://api.openai.com/v1"

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        *,
        dimensions: int | None = None,
        dimension: int | None = None,
        **options: Any,
    ) -> None:
        native, shortens = MODELS.get(model, (dimension or 0, dimensions is not None))
        if not native and dimensions is None:
            raise ConfigurationError(
                f"unknown OpenAI embedding model {model!r}: pass dimension= (its vector size)"
            )
        if dimensions is not None:
            if not shortens:
                raise ConfigurationError(f"{model} does not accept dimensions=")
            if not 1 <= dimensions <= (native or dimensions):
                raise ConfigurationError(f"dimensions must be 1..{native} for {model}")
        self.dimensions = dimensions
        super().__init__(model, dimension=dimensions or native, **options)

    async def _request(self, texts: list[str], input_type: InputType) -> Any:
        body: dict[str, Any] = {"model": self.name, "input": texts, "encoding_format": "base64"}
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        answer = await self._post("/embeddings", body)
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list):
            raise self._bad("the answer has no data list", body=answer)
        rows: list[Any] = [None] * len(texts)
        for position, item in enumerate(data):
            index = item.get("index", position) if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < len(texts):
                raise self._bad(f"the answer has a bad index {index!r}", body=answer)
            rows[index] = _decode(item.get("embedding"))
        missing = [index for index, row in enumerate(rows) if row is None]
        if missing:
            raise self._bad(f"the answer lacks item(s) {missing[:10]}", items=missing)
        return rows


def _decode(raw: object) -> Any:
    if isinstance(raw, str):
        try:
            return np.frombuffer(base64.b64decode(raw, validate=True), dtype="<f4")
        except (binascii.Error, ValueError):
            return None
    if isinstance(raw, list):
        return raw
    return None
