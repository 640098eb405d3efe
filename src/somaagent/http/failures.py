"""HTTP failures as :class:`~somaagent.errors.ProviderError` subclasses: the one transport-error
mapper (aiohttp's and httpx's exceptions) and the one status mapper (an error answer, with the
vendor's own message and the ``retry_after`` it asked for)."""

from __future__ import annotations

import contextlib
import email.utils
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp
import httpx
from aiohttp.http_exceptions import ContentEncodingError

from somaagent.errors import (
    ProviderAuthenticationError,
    ProviderBadRequestError,
    ProviderConnectionError,
    ProviderError,
    ProviderOverloadedError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderTimeoutError,
)


@contextlib.contextmanager
def map_transport_errors(
    provider: str, *, method: str | None = None, url: str | None = None
) -> Iterator[None]:
    """Translate transport exceptions raised inside the block into ``ProviderError`` subclasses.

    Both aiohttp's and httpx's exceptions are mapped. Timeouts of any phase become
    :class:`ProviderTimeoutError`; refused, reset or broken connections, bodies cut short and
    protocol failures become :class:`ProviderConnectionError`; a body that cannot be decoded
    (a bad ``Content-Encoding``) or an answer the client refuses becomes
    :class:`ProviderResponseError`. Other exceptions, ``ProviderError`` included, pass through.

    Args:
        provider: the provider id, recorded on the error.
        method: the request's method, named in the message (aiohttp's exceptions carry no
            request; httpx's do, and theirs is used).
        url: the request's URL, named in the message.
    """
    try:
        yield
    except aiohttp.ClientError as exc:
        raise _from_aiohttp(exc, provider, _request_text(method, url)) from exc
    except httpx.TimeoutException as exc:
        raise ProviderTimeoutError(
            f"{_phase(exc)} timed out{_where(exc, method, url)}", provider=provider
        ) from exc
    except httpx.TransportError as exc:
        raise ProviderConnectionError(
            f"{type(exc).__name__}{_where(exc, method, url)}: {exc or 'connection failed'}",
            provider=provider,
        ) from exc
    except httpx.HTTPError as exc:
        raise ProviderResponseError(
            f"{type(exc).__name__}{_where(exc, method, url)}: {exc}", provider=provider
        ) from exc


def _from_aiohttp(exc: aiohttp.ClientError, provider: str, where: str) -> ProviderError:
    name = type(exc).__name__
    if isinstance(exc, aiohttp.ServerTimeoutError):
        phase = (
            "connecting"
            if isinstance(exc, aiohttp.ConnectionTimeoutError)
            else "waiting for the answer"
        )
        return ProviderTimeoutError(f"{phase} timed out{where}", provider=provider)
    if isinstance(exc, aiohttp.ClientPayloadError):
        # aiohttp wraps what went wrong with the body: a bad Content-Encoding is the answer's
        # fault; a length or chunking that ends early is a connection cut short.
        if isinstance(exc.__cause__, ContentEncodingError):
            return ProviderResponseError(f"{name}{where}: {exc}", provider=provider)
        return ProviderConnectionError(
            f"{name}{where}: the answer was cut short ({exc})", provider=provider
        )
    if isinstance(exc, aiohttp.ClientResponseError):
        return ProviderResponseError(f"{name}{where}: {exc}", provider=provider)
    return ProviderConnectionError(
        f"{name}{where}: {exc or 'connection failed'}", provider=provider
    )


def _request_text(method: str | None, url: str | None) -> str:
    if url is None:
        return ""
    return f" ({method} {url})" if method else f" ({url})"


def _phase(exc: httpx.TimeoutException) -> str:
    phases: dict[type[httpx.TimeoutException], str] = {
        httpx.ConnectTimeout: "connecting",
        httpx.ReadTimeout: "waiting for the answer",
        httpx.WriteTimeout: "sending the request",
        httpx.PoolTimeout: "waiting for a free connection",
    }
    return phases.get(type(exc), "the request")


def _where(exc: httpx.HTTPError, method: str | None, url: str | None) -> str:
    try:
        request = exc.request
    except RuntimeError:  # raised by httpx when the exception has no request attached
        return _request_text(method, url)
    return f" ({request.method} {request.url})"


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` (OpenAI) or ``Retry-After`` (seconds or HTTP date).

    Args:
        headers: the response headers (any mapping: aiohttp's or httpx's headers, a dict).
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


async def error_from_response(
    response: aiohttp.ClientResponse | httpx.Response, *, provider: str
) -> ProviderError:
    """Read an error response's body (streamed or not) and map it with :func:`error_for_status`.

    Reading the body can itself fail; call this inside :func:`map_transport_errors`.
    """
    if isinstance(response, httpx.Response):
        content = await response.aread()
        return error_for_status(
            response.status_code,
            provider=provider,
            body=decode_body(content),
            headers=response.headers,
        )
    content = await response.read()
    return error_for_status(
        response.status, provider=provider, body=decode_body(content), headers=response.headers
    )
