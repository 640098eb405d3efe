"""A local stand-in for OpenAI's ``POST /v1/embeddings``, speaking its real wire format.

Request: ``{"model", "input": str | [str], "encoding_format": "float" | "base64",
"dimensions"?}`` with a bearer key. Answer: ``{"object": "list", "data": [{"object":
"embedding", "index", "embedding"}], "model", "usage": {"prompt_tokens", "total_tokens"}}``, the
embedding a list of floats or base64 of little-endian float32. Vectors are deterministic unit
vectors seeded by the text, so equal texts embed equally; ``dimensions`` truncates and
re-normalises, as OpenAI does. Errors use OpenAI's ``{"error": {...}}`` body: a bad key (401),
an unknown model or ``dimensions`` on ada-002 (400), an empty input string (400), and an input
containing ``[[reject]]`` (400, like an over-long input). ``fail_next`` queues statuses
(429 with ``retry-after: 0``, 500, 503) for the next requests.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

__all__ = ["MODELS", "FakeOpenAIEmbeddings", "fake_vector"]

MODELS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


def fake_vector(text: str, dimension: int, salt: str = "") -> np.ndarray:
    """The fake's deterministic unit vector for a text."""
    seed = int.from_bytes(hashlib.sha256((salt + text).encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).normal(size=dimension).astype(np.float32)
    return vector / np.linalg.norm(vector)


def _error(
    status: int, message: str, kind: str = "invalid_request_error", code: str | None = None
) -> JSONResponse:
    headers = {"retry-after": "0"} if status == 429 else None
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class FakeOpenAIEmbeddings:
    """The fake's state (request log, fault queue) and its ASGI app."""

    def __init__(self, api_key: str = "sk-fake-embeddings") -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.fail_next: list[int] = []
        self.app = Starlette(routes=[Route("/v1/embeddings", self.embeddings, methods=["POST"])])

    async def embeddings(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", code="invalid_api_key")
        body = await request.json()
        self.requests.append(body)
        if self.fail_next:
            status = self.fail_next.pop(0)
            kind = "requests" if status == 429 else "server_error"
            return _error(status, f"injected {status}", kind=kind)
        model = body.get("model")
        if model not in MODELS:
            return _error(404, f"The model `{model}` does not exist.", code="model_not_found")
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or len(texts) > 2048:
            return _error(400, "'$.input' is invalid.")
        if any(not isinstance(t, str) or not t for t in texts):
            return _error(400, "'$.input' is invalid. Please check the API reference.")
        if any("[[reject]]" in t for t in texts):
            return _error(400, "This model's maximum context length is 8192 tokens.")
        dimension = MODELS[model]
        dimensions = body.get("dimensions")
        if dimensions is not None:
            if model == "text-embedding-ada-002":
                return _error(400, "This model does not support specifying dimensions.")
            if not isinstance(dimensions, int) or not 1 <= dimensions <= dimension:
                return _error(400, "Invalid value for 'dimensions'.")
        data = []
        for index, text in enumerate(texts):
            vector = fake_vector(text, dimension)
            if dimensions is not None:
                vector = vector[:dimensions] / np.linalg.norm(vector[:dimensions])
            if body.get("encoding_format") == "base64":
                encoded: Any = base64.b64encode(vector.astype("<f4").tobytes()).decode()
            else:
                encoded = [float(x) for x in vector]
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(t.split()) for t in texts)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )
