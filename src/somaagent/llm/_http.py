"""HTTP plumbing shared by the HTTP provider adapters (no vendor wire formats here).

This module owns:

* the process-wide connection pool (:func:`get_client`, :func:`aclose_client`): one
  :class:`httpx.AsyncClient` per running event loop, shared by every provider instance, so
  connections to a provider are reused across models and requests;
* the one transport-error mapper (:func:`map_transport_errors`), which turns httpx exceptions
  into ``ProviderTimeoutError`` / ``ProviderConnectionError`` at the boundary, the way httpx
  maps httpcore's exceptions;
* the one status mapper (:func:`error_for_status`, :func:`error_from_response`), which turns an
  HTTP error answer into the right :class:`~somaagent.errors.ProviderError` subclass, with the
  vendor's own message and the ``retry_after`` it asked for;
* a small Server-Sent Events reader (:func:`aiter_sse`) used by the streaming adapters.

Both OpenAI and Anthropic (and most compatible servers) wrap errors in the same envelope,
``{"error": {"message": ..., "type": ...}}``, so one body reader serves both.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import time
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from somaagent.errors import (
    ConfigurationError,
    ProviderAuthenticationError,
    ProviderBadRequestError,
    ProviderConnectionError,
    ProviderError,
    ProviderOverloadedError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderTimeoutError,
)

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "SSEEvent",
    "aclose_client",
    "aiter_sse",
    "check_base_url",
    "decode_body",
    "error_for_status",
    "error_from_response",
    "get_client",
    "map_transport_errors",
    "parse_retry_after",
    "timeout_for",
    "vendor_error",
]

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
DEFAULT_LIMITS = httpx.Limits(
    max_connections=200, max_keepalive_connections=40, keepalive_expiry=30.0
)

# httpx's connections belong to the event loop that opened them, so the shared pool is kept per
# loop; a loop that is garbage-collected drops its entry.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def get_client() -> httpx.AsyncClient:
    """Return the shared HTTP client of the running event loop, creating it on first use.

    Every provider adapter sends through this client unless it was given its own, so all models
    share one connection pool. Close it with :func:`aclose_client` when the loop's work is done
    (the gateway does so on shutdown).

    Returns:
        The process-wide :class:`httpx.AsyncClient` for the current event loop.
    """
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(
            timeout=DEFAULT_TIMEOUT,
            limits=DEFAULT_LIMITS,
            follow_redirects=False,
            headers={"user-agent": "somaagent"},
        )
        _clients[loop] = client
    return client


async def aclose_client() -> None:
    """Close the running loop's shared client, if it has one; the next use opens a new one."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


def timeout_for(seconds: float) -> httpx.Timeout:
    """The per-request timeout: ``seconds`` to connect, and for each read, write and pool wait."""
    return httpx.Timeout(seconds)


def check_base_url(base_url: str, *, setting: str) -> str:
    """Validate a provider base URL and return it without a trailing slash.

    Raises:
        ConfigurationError: the URL is not an absolute ``http(s)`` URL.
    """
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ConfigurationError(f"{setting} is not a valid URL: {base_url!r} ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"{setting} must be an absolute http(s) URL such as https://api.example.com/v1, "
            f"got {base_url!r}"
        )
    return base_url.rstrip("/")


@contextlib.contextmanager
def map_transport_errors(provider: str) -> Iterator[None]:
    """Translate httpx's exceptions raised inside the block into ``ProviderError`` subclasses.

    Timeouts of any phase become :class:`ProviderTimeoutError`; refused, reset or broken
    connections and protocol failures become :class:`ProviderConnectionError`; a body that
    cannot be decoded becomes :class:`ProviderResponseError`.
    """
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ProviderTimeoutError(
            f"{_phase(exc)} timed out{_where(exc)}", provider=provider
        ) from exc
    except httpx.TransportError as exc:
        raise ProviderConnectionError(
            f"{type(exc).__name__}{_where(exc)}: {exc or 'connection failed'}", provider=provider
        ) from exc
    except httpx.HTTPError as exc:
        raise ProviderResponseError(
            f"{type(exc).__name__}{_where(exc)}: {exc}", provider=provider
        ) from exc


def _phase(exc: httpx.TimeoutException) -> str:
    phases: dict[type[httpx.TimeoutException], str] = {
        httpx.ConnectTimeout: "connecting",
        httpx.ReadTimeout: "waiting for the answer",
        httpx.WriteTimeout: "sending the request",
        httpx.PoolTimeout: "waiting for a free connection",
    }
    return phases.get(type(exc), "the request")


def _where(exc: httpx.HTTPError) -> str:
    try:
        request = exc.request
    except RuntimeError:  # raised by httpx when the exception has no request attached
        return ""
    return f" ({request.method} {request.url})"


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` (OpenAI) or ``Retry-After`` (seconds or HTTP date).

    Args:
        headers: the response headers (case-insensitive mapping, such as ``httpx.Headers``).
        now: the current POSIX time, for tests; defaults to :func:`time.time`.

    Returns:
        A non-negative number of seconds, or ``None`` when the headers say nothing usable.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        with contextlib.suppress(ValueError):
            millis = float(raw_ms)
            if millis >= 0 and millis == millis:  # rejects NaN
                return millis / 1000.0
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    with contextlib.suppress(ValueError):
        seconds = float(raw)
        return seconds if seconds >= 0 and seconds == seconds else None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def vendor_error(body: Any) -> tuple[str | None, str | None]:
    """Pull ``(message, kind)`` out of an ``{"error": {"message", "type", "code"}}`` body.

    ``kind`` is the error's string ``code`` when it has one, else its ``type``.
    """
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    if isinstance(error, str):  # some compatible servers send {"error": "text"}
        return error, None
    if not isinstance(error, dict):
        message = body.get("message") or body.get("detail")
        return (str(message) if message else None), None
    message = error.get("message")
    # OpenAI's string ``code`` (invalid_api_key, insufficient_quota) is more precise than its
    # ``type``; Anthropic has only ``type``; some compatible servers put the status in ``code``.
    code = error.get("code")
    kind = code if isinstance(code, str) and code else error.get("type")
    return (str(message) if message else None), (str(kind) if kind else None)


_BY_STATUS: dict[int, type[ProviderError]] = {
    400: ProviderBadRequestError,
    401: ProviderAuthenticationError,
    403: ProviderAuthenticationError,
    404: ProviderBadRequestError,
    408: ProviderTimeoutError,
    413: ProviderBadRequestError,
    422: ProviderBadRequestError,
    429: ProviderRateLimitError,
    502: ProviderOverloadedError,
    503: ProviderOverloadedError,
    504: ProviderTimeoutError,
    529: ProviderOverloadedError,  # Anthropic: overloaded
}

_BY_ERROR_TYPE: dict[str, type[ProviderError]] = {
    # The body's type wins over the status only where it is more precise: Anthropic has sent
    # overloaded_error with statuses other than 529.
    "overloaded_error": ProviderOverloadedError,
}


def error_for_status(
    status_code: int,
    *,
    provider: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> ProviderError:
    """Build the ``ProviderError`` for an HTTP error answer.

    Args:
        status_code: the provider's HTTP status (4xx or 5xx).
        provider: the provider id, recorded on the error.
        body: the decoded error body (a dict for JSON, else text), kept on the error.
        headers: the response headers, read for ``Retry-After`` / ``retry-after-ms``.

    Returns:
        The error to raise; its message is the vendor's own message when the body has one.
    """
    message, kind = vendor_error(body)
    if message is None:
        text = body.strip()[:300] if isinstance(body, str) else ""
        message = text or f"HTTP {status_code} from the provider"
    if kind:
        message = f"{message} [{kind}]"
    cls = _BY_ERROR_TYPE.get(kind or "") or _BY_STATUS.get(status_code)
    if cls is None:
        if status_code >= 500:
            cls = ProviderResponseError
        elif status_code >= 400:
            cls = ProviderBadRequestError
        else:
            cls = ProviderResponseError
    retry_after = parse_retry_after(headers) if headers is not None else None
    return cls(
        message,
        provider=provider,
        status_code=status_code,
        body=body,
        retry_after=retry_after,
    )


def decode_body(content: bytes) -> Any:
    """Decode an error body as JSON when it is JSON, else as (lossy) text."""
    text = content.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


async def error_from_response(response: httpx.Response, *, provider: str) -> ProviderError:
    """Read an error response's body (streamed or not) and map it with :func:`error_for_status`."""
    content = await response.aread()
    return error_for_status(
        response.status_code,
        provider=provider,
        body=decode_body(content),
        headers=response.headers,
    )


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One Server-Sent Event: its ``event`` name (``message`` when unnamed) and ``data``."""

    event: str
    data: str


async def aiter_sse(response: httpx.Response) -> AsyncIterator[SSEEvent]:
    """Parse a ``text/event-stream`` body into events, following the WHATWG rules we need.

    Comment lines (``:``) and unknown fields are skipped; multi-line ``data`` is joined with
    newlines; an event is dispatched at a blank line. A final event that is not followed by a
    blank line is still dispatched (some servers omit it), so callers decide completeness from
    the events themselves, never from a clean end of the body.
    """
    event = ""
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield SSEEvent(event or "message", "\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield SSEEvent(event or "message", "\n".join(data))
