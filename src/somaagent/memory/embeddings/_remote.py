"""What the HTTP embedders share: batching, retries, and pinning failures on items.

Each vendor module implements only :meth:`RemoteEmbedder._request` (one request for one batch,
in its wire format). This base

* splits the caller's texts into batches of ``batch_size`` (100 by default) and sends up to
  ``max_concurrency`` at once over the shared connection pool of :mod:`somaagent.http`;
* retries a batch that failed with a retryable :class:`~somaagent.errors.ProviderError` (rate
  limit, overload, timeout, connection) up to ``max_retries`` times, waiting the vendor's
  ``Retry-After`` when it gave one, else an exponential backoff;
* when the vendor rejects a batch as bad input, splits it in halves until the rejected texts are
  found, and raises :class:`~somaagent.errors.EmbeddingError` naming them.
"""

from __future__ import annotations

import abc
import os
import random
from collections.abc import Sequence
from typing import Any

import anyio
import httpx
import numpy as np

from somaagent import http as _http
from somaagent.errors import (
    ConfigurationError,
    EmbeddingError,
    ProviderBadRequestError,
    ProviderError,
)
from somaagent.memory.embeddings.base import (
    Embedder,
    InputType,
    Vectors,
    check_texts,
    check_vectors,
)

__all__ = ["RemoteEmbedder"]


class RemoteEmbedder(Embedder):
    """An embedder behind an HTTP API (see the module docstring).

    Args:
        model: the vendor's model name.
        api_key: the key; defaults to the environment variable ``key_env``.
        base_url: the API root.
        batch_size: texts per request (the vendors allow 96 to 2048).
        max_retries: retries per batch on retryable failures.
        max_concurrency: batches in flight at once.
        timeout: seconds per request phase.
        client: an ``httpx.AsyncClient`` to use instead of the shared pool (tests).
    """

    key_env: str
    default_base_url: str

    def __init__(
        self,
        model: str,
        *,
        dimension: int,
        api_key: str | None = None,
        base_url: str | None = None,
        batch_size: int = 100,
        max_retries: int = 3,
        max_concurrency: int = 4,
        timeout: float = 60.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        key = api_key or os.environ.get(self.key_env)
        if not key:
            raise ConfigurationError(
                f"the {self.provider} embedder needs an API key: pass api_key= or set "
                f"{self.key_env}"
            )
        self.name = model
        self.dimension = dimension
        self.api_key = key
        self.base_url = _http.check_base_url(
            base_url or self.default_base_url, setting=f"{self.provider} base_url"
        )
        self.batch_size = max(1, batch_size)
        self.max_retries = max(0, max_retries)
        self.max_concurrency = max(1, max_concurrency)
        self.timeout = _http.timeout_for(timeout)
        self._own_client = client

    def _client(self) -> httpx.AsyncClient:
        return self._own_client or _http.get_client()

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        """POST JSON and return the decoded answer, or raise the typed ProviderError."""
        headers = {"authorization": f"Bearer {self.api_key}", "content-type": "application/json"}
        with _http.map_transport_errors(self.provider):
            response = await self._client().post(
                f"{self.base_url}{path}", json=body, headers=headers, timeout=self.timeout
            )
            if response.status_code >= 400:
                raise await _http.error_from_response(response, provider=self.provider)
            try:
                return response.json()
            except ValueError:
                raise self._bad("the answer is not JSON", body=response.text[:300]) from None

    def _bad(self, message: str, *, body: Any = None, items: Sequence[int] = ()) -> EmbeddingError:
        return EmbeddingError(message, provider=self.provider, body=body, items=items)

    @abc.abstractmethod
    async def _request(self, texts: list[str], input_type: InputType) -> Any:
        """Send one batch; return its vectors as rows in input order (any array-like)."""

    async def _with_retries(self, texts: list[str], input_type: InputType) -> Any:
        for attempt in range(self.max_retries + 1):
            try:
                return await self._request(texts, input_type)
            except ProviderError as exc:
                if not exc.retryable or isinstance(exc, EmbeddingError):
                    raise
                if attempt >= self.max_retries:
                    raise
                delay = exc.retry_after
                if delay is None:
                    delay = min(8.0, 0.5 * 2**attempt) * (0.5 + random.random() / 2)
                await anyio.sleep(min(delay, 60.0))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _batch(self, texts: list[str], input_type: InputType, offset: int) -> Vectors:
        try:
            raw = await self._with_retries(texts, input_type)
        except EmbeddingError as exc:
            raise EmbeddingError(
                f"{exc.message} (items {offset}-{offset + len(texts) - 1})",
                provider=self.provider,
                items=[offset + item for item in exc.items] or range(offset, offset + len(texts)),
                status_code=exc.status_code,
                body=exc.body,
            ) from exc
        except ProviderBadRequestError as exc:
            if len(texts) == 1:
                raise EmbeddingError(
                    f"the model rejected item {offset}: {exc.message}",
                    provider=self.provider,
                    items=[offset],
                    status_code=exc.status_code,
                    body=exc.body,
                ) from exc
            return await self._bisect(texts, input_type, offset, exc)
        return check_vectors(
            raw,
            expected=len(texts),
            dimension=self.dimension,
            provider=self.provider,
            offset=offset,
        )

    async def _bisect(
        self, texts: list[str], input_type: InputType, offset: int, cause: ProviderError
    ) -> Vectors:
        half = len(texts) // 2
        failed: list[int] = []
        parts: list[Vectors] = []
        for start, part in ((0, texts[:half]), (half, texts[half:])):
            try:
                parts.append(await self._batch(part, input_type, offset + start))
            except EmbeddingError as exc:
                failed.extend(exc.items)
        if failed:
            raise EmbeddingError(
                f"the model rejected item(s) {failed[:10]}: {cause.message}",
                provider=self.provider,
                items=sorted(failed),
                status_code=cause.status_code,
                body=cause.body,
            ) from cause
        return np.concatenate(parts)

    async def embed(self, texts: Sequence[str], *, input_type: InputType = "document") -> Vectors:
        """Embed ``texts`` in batches (see :meth:`Embedder.embed`)."""
        check_texts(texts, provider=self.provider, allow_empty=False)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        limiter = anyio.CapacityLimiter(self.max_concurrency)
        errors: list[ProviderError] = []

        async def run(start: int) -> None:
            async with limiter:
                if errors and not all(isinstance(e, EmbeddingError) for e in errors):
                    return  # the call fails anyway: spare the vendor the rest
                batch = list(texts[start : start + self.batch_size])
                try:
                    out[start : start + len(batch)] = await self._batch(batch, input_type, start)
                except ProviderError as exc:
                    errors.append(exc)

        async with anyio.create_task_group() as group:
            for start in range(0, len(texts), self.batch_size):
                group.start_soon(run, start)
        if not errors:
            return out
        failed = [e for e in errors if not isinstance(e, EmbeddingError)]
        if failed:
            raise failed[0]
        items = sorted(item for e in errors if isinstance(e, EmbeddingError) for item in e.items)
        first = errors[0]
        if len(errors) == 1:
            raise first
        raise EmbeddingError(
            f"{len(items)} item(s) failed, first {items[:10]}: {first.message}",
            provider=self.provider,
            items=items,
            status_code=first.status_code,
            body=first.body,
        ) from first
