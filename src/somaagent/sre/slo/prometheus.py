"""A small client for the Prometheus HTTP API (``/api/v1/query`` and ``/api/v1/query_range``).

Twin classes, :class:`PrometheusClient` (sync) and :class:`AsyncPrometheusClient`, share all
request building and response parsing; they only send. Failures are typed (the classes live
in :mod:`somaagent.errors` and are re-exported here):

::

    PrometheusError                  (an OperationsError)
    ├── PrometheusUnreachableError   refused, DNS, TLS, timed out
    ├── PrometheusQueryError         Prometheus answered {"status": "error"} (bad query, ...)
    └── PrometheusResponseError      an answer that is not the API's JSON (wrong URL, proxy)

An instant query that answers a scalar (``scalar(...)``, ``time()``) comes back as one sample
without labels, so callers read vectors and scalars alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from somaagent.errors import (
    PrometheusError,
    PrometheusQueryError,
    PrometheusResponseError,
    PrometheusUnreachableError,
)

__all__ = [
    "AsyncPrometheusClient",
    "PrometheusClient",
    "PrometheusError",
    "PrometheusQueryError",
    "PrometheusResponseError",
    "PrometheusUnreachableError",
    "Sample",
    "Series",
]

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Sample:
    """One instant-vector element: its labels and value (NaN and ±Inf kept as floats)."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class Series:
    """One range-vector series: its labels and ``(unix time, value)`` points."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


def _timestamp(when: datetime | float) -> str:
    seconds = when.timestamp() if isinstance(when, datetime) else float(when)
    return f"{seconds:.3f}"


def _float(raw: Any) -> float:
    # The API writes values as strings: "1.5", "NaN", "+Inf", "-Inf"; float() reads them all.
    return float(raw)


class _Base:
    """Request building and response parsing: no I/O."""

    def __init__(self, url: str, *, timeout: float, headers: dict[str, str] | None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"a Prometheus URL starts with http:// or https://, not {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = dict(headers or {})

    def _instant_params(self, query: str, at: datetime | float | None) -> dict[str, str]:
        params = {"query": query}
        if at is not None:
            params["time"] = _timestamp(at)
        return params

    def _range_params(
        self, query: str, start: datetime | float, end: datetime | float, step: float
    ) -> dict[str, str]:
        if step <= 0:
            raise ValueError("step must be positive")
        return {
            "query": query,
            "start": _timestamp(start),
            "end": _timestamp(end),
            "step": f"{step:.3f}",
        }

    def _unreachable(self, exc: httpx.HTTPError, query: str) -> PrometheusUnreachableError:
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "unreachable"
        detail = str(exc) or type(exc).__name__
        return PrometheusUnreachableError(
            f"Prometheus at {self.url} is {kind}: {detail}", url=self.url, query=query
        )

    def _data(self, response: httpx.Response, query: str, expect: str) -> list[Any]:
        """The ``result`` of a successful answer of type ``expect`` (a scalar for a vector is
        returned as a one-element list holding the ``[time, value]`` pair)."""
        try:
            body = response.json()
        except ValueError:
            raise PrometheusResponseError(
                f"{self.url} answered HTTP {response.status_code} with something that is not "
                "the Prometheus API's JSON; is this the Prometheus base URL?",
                url=self.url,
                query=query,
            ) from None
        if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
            raise PrometheusResponseError(
                f"{self.url} answered HTTP {response.status_code} without a Prometheus status",
                url=self.url,
                query=query,
            )
        if body["status"] == "error":
            error_type = body.get("errorType")
            raise PrometheusQueryError(
                f"Prometheus at {self.url} failed the query ({error_type}): {body.get('error')}",
                url=self.url,
                query=query,
                error_type=str(error_type) if error_type is not None else None,
            )
        data = body.get("data")
        if expect == "vector" and isinstance(data, dict) and data.get("resultType") == "scalar":
            return [{"metric": {}, "value": data.get("result")}]
        if not isinstance(data, dict) or data.get("resultType") != expect:
            raise PrometheusResponseError(
                f"Prometheus at {self.url} answered a result that is not a {expect}",
                url=self.url,
                query=query,
            )
        result = data.get("result")
        if not isinstance(result, list):
            raise PrometheusResponseError(
                f"Prometheus at {self.url} answered a malformed result", url=self.url, query=query
            )
        return result

    def _vector(self, response: httpx.Response, query: str) -> list[Sample]:
        try:
            return [
                Sample(labels=dict(item["metric"]), value=_float(item["value"][1]))
                for item in self._data(response, query, "vector")
            ]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise PrometheusResponseError(
                f"Prometheus at {self.url} answered a malformed vector: {exc}",
                url=self.url,
                query=query,
            ) from exc

    def _matrix(self, response: httpx.Response, query: str) -> list[Series]:
        try:
            return [
                Series(
                    labels=dict(item["metric"]),
                    points=[(float(t), _float(v)) for t, v in item["values"]],
                )
                for item in self._data(response, query, "matrix")
            ]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise PrometheusResponseError(
                f"Prometheus at {self.url} answered a malformed matrix: {exc}",
                url=self.url,
                query=query,
            ) from exc


class PrometheusClient(_Base):
    """A synchronous Prometheus API client; use it as a context manager or ``close()`` it.

    Args:
        url: the server's base URL, e.g. ``http://127.0.0.1:9090``.
        timeout: seconds per request.
        headers: extra headers (an ``Authorization`` for a protected server).
    """

    def __init__(
        self, url: str, *, timeout: float = DEFAULT_TIMEOUT, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(url, timeout=timeout, headers=headers)
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=self.headers)

    def query(self, query: str, *, at: datetime | float | None = None) -> list[Sample]:
        """Run an instant query (at ``at``, default now)."""
        return self._vector(self._get("/api/v1/query", self._instant_params(query, at)), query)

    def query_range(
        self, query: str, *, start: datetime | float, end: datetime | float, step: float
    ) -> list[Series]:
        """Run a range query from ``start`` to ``end`` every ``step`` seconds."""
        params = self._range_params(query, start, end, step)
        return self._matrix(self._get("/api/v1/query_range", params), query)

    def _get(self, path: str, params: dict[str, str]) -> httpx.Response:
        try:
            return self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc, params["query"]) from exc

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncPrometheusClient(_Base):
    """The asynchronous twin of :class:`PrometheusClient`."""

    def __init__(
        self, url: str, *, timeout: float = DEFAULT_TIMEOUT, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(url, timeout=timeout, headers=headers)
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout, headers=self.headers)

    async def query(self, query: str, *, at: datetime | float | None = None) -> list[Sample]:
        """Run an instant query (at ``at``, default now)."""
        response = await self._get("/api/v1/query", self._instant_params(query, at))
        return self._vector(response, query)

    async def query_range(
        self, query: str, *, start: datetime | float, end: datetime | float, step: float
    ) -> list[Series]:
        """Run a range query from ``start`` to ``end`` every ``step`` seconds."""
        params = self._range_params(query, start, end, step)
        return self._matrix(await self._get("/api/v1/query_range", params), query)

    async def _get(self, path: str, params: dict[str, str]) -> httpx.Response:
        try:
            return await self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc, params["query"]) from exc

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncPrometheusClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
