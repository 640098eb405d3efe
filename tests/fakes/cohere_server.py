"""A local stand-in for Cohere's ``POST /v2/embed``, speaking its real wire format.

Request: ``{"model", "texts": [...], "input_type": "search_document" | "search_query" |
"classification" | "clustering", "embedding_types": ["float"], "truncate"?}`` with a bearer key.
Answer: ``{"id", "embeddings": {"float": [[...]]}, "texts", "meta": {"api_version": {"version":
"2"}, "billed_units": {"input_tokens"}}, "response_type": "embeddings_by_type"}``. Vectors are
deterministic per text *and* input type (v3 models embed queries and documents differently).
Errors use Cohere's ``{"message": ...}`` body: a bad key (401), an unknown model (404), a missing
``input_type`` or more than 96 texts (400), a text containing ``[[reject]]`` (400).
``fail_next`` queues statuses for the next requests (429 with ``retry-after: 0``).
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.openai_embeddings import fake_vector

__all__ = ["MODELS", "FakeCohere"]

MODELS = {
    "embed-english-v3.0": 1024,
    "embed-multilingual-v3.0": 1024,
    "embed-english-light-v3.0": 384,
    "embed-multilingual-light-v3.0": 384,
}
INPUT_TYPES = {"search_document", "search_query", "classification", "clustering"}


def _error(status: int, message: str) -> JSONResponse:
    headers = {"retry-after": "0"} if status == 429 else None
    return JSONResponse({"message": message}, status_code=status, headers=headers)


class FakeCohere:
    """The fake's state (request log, fault queue) and its ASGI app."""

    def __init__(self, api_key: str = "co-fake-key") -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.fail_next: list[int] = []
        self.app = Starlette(routes=[Route("/v2/embed", self.embed, methods=["POST"])])

    async def embed(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "invalid api token")
        body = await request.json()
        self.requests.append(body)
        if self.fail_next:
            status = self.fail_next.pop(0)
            return _error(status, f"injected {status}")
        model = body.get("model")
        if model not in MODELS:
            return _error(
                404, f"model '{model}' not found, make sure the correct model ID was used"
            )
        texts = body.get("texts")
        if not isinstance(texts, list) or not texts or len(texts) > 96:
            return _error(400, "invalid request: texts must be a list of 1 to 96 strings")
        input_type = body.get("input_type")
        if input_type not in INPUT_TYPES:
            return _error(400, f"invalid request: input_type is required for {model} and newer")
        if any("[[reject]]" in t for t in texts):
            return _error(400, "invalid request: a text could not be embedded")
        vectors = [
            [float(x) for x in fake_vector(t, MODELS[model], salt=input_type)] for t in texts
        ]
        return JSONResponse(
            {
                "id": str(uuid.uuid4()),
                "embeddings": {"float": vectors},
                "texts": texts,
                "meta": {
                    "api_version": {"version": "2"},
                    "billed_units": {"input_tokens": sum(len(t.split()) for t in texts)},
                },
                "response_type": "embeddings_by_type",
            }
        )
