"""``POST /v1/embeddings`` in OpenAI's format, so OpenAI clients embed through the gateway.

``model`` picks the embedder: ``all-MiniLM-L6-v2`` (the local model, also ``local``),
``text-embedding-3-small`` / ``-3-large`` / ``ada-002`` (OpenAI, with the gateway's key),
``embed-*`` (Cohere), or ``provider:model``. ``dimensions`` works where the model supports it
(``text-embedding-3-*``); elsewhere it is a 422. ``encoding_format: base64`` returns each vector
as the base64 of its little-endian float32 bytes, as OpenAI does. Token arrays as input are not
supported (a 422): send text. Usage is counted with ``cl100k_base``, an estimate for models
whose tokenizer differs.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import anyio.to_thread
import numpy as np
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from somaagent.errors import ValidationError
from somaagent.gateway.auth import CurrentPrincipal
from somaagent.gateway.routes.memory import Memory
from somaagent.llm.tokens import get_encoder

router = APIRouter(prefix="/v1", tags=["openai"])

MAX_INPUTS = 2048
MAX_INPUT_CHARS = 100_000


class EmbeddingsRequest(BaseModel):
    """OpenAI's embeddings body; unknown fields are an error naming them."""

    model_config = ConfigDict(extra="forbid")

    input: str | list[str] | list[int] | list[list[int]]
    model: str = Field(min_length=1, max_length=200)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1, le=8192)
    user: str | None = None


def _texts(value: str | list[str] | list[int] | list[list[int]]) -> list[str]:
    items: list[Any] = [value] if isinstance(value, str) else list(value)
    if not items:
        raise _invalid(["body", "input"], "input must be a string or a non-empty list of strings")
    if len(items) > MAX_INPUTS:
        raise _invalid(["body", "input"], f"at most {MAX_INPUTS} inputs per request")
    texts: list[str] = []
    for index, item in enumerate(items):
        loc: list[str | int] = (
            ["body", "input"] if isinstance(value, str) else ["body", "input", index]
        )
        if not isinstance(item, str):
            raise _invalid(loc, "token arrays are not supported; send the text")
        if not item.strip():
            raise _invalid(loc, "an input cannot be empty")
        if len(item) > MAX_INPUT_CHARS:
            raise _invalid(loc, f"an input is at most {MAX_INPUT_CHARS:,} characters")
        texts.append(item)
    return texts


def _invalid(loc: list[str | int], message: str) -> ValidationError:
    return ValidationError(message, errors=[{"loc": loc, "msg": message, "type": "value_error"}])


def _encode(vector: np.ndarray[Any, np.dtype[np.float32]], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


@router.post("/embeddings")
async def create_embeddings(
    body: EmbeddingsRequest, who: CurrentPrincipal, memory: Memory
) -> dict[str, Any]:
    """Embed text, OpenAI-style."""
    texts = _texts(body.input)
    embedder = memory.embedders.get(body.model, dimensions=body.dimensions)
    vectors = await embedder.embed(texts, input_type="document")
    if body.dimensions is not None and vectors.shape[1] != body.dimensions:
        raise _invalid(
            ["body", "dimensions"],
            f"{body.model} returned {vectors.shape[1]}-d vectors, not {body.dimensions}",
        )

    def count() -> int:
        encoder = get_encoder("cl100k_base")
        return sum(len(encoder.encode_ordinary(t)) for t in texts)

    used = await anyio.to_thread.run_sync(count)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
            for i, v in enumerate(vectors)
        ],
        "model": body.model,
        "usage": {"prompt_tokens": used, "total_tokens": used},
    }
