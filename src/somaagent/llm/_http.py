"""HTTP plumbing shared by the HTTP provider adapters (no vendor wire formats here).

This module owns:

* the process-wide connection pools, one per running event loop: :func:`get_session`, an
  :class:`aiohttp.ClientSession` that the chat adapters (OpenAI, Anthropic) send through, and
  :func:`get_client`, an :class:`httpx.AsyncClient` for the callers still written on httpx (the
  memory embedders); :func:`aclose_client` closes both;
* the per-request timeouts (:func:`request_timeout` for aiohttp, :func:`timeout_for` for
  httpx): a limit to connect and a limit *per read*, never one for the whole exchange, so a
  long stream that keeps sending is never cut while a stalled one times out;
* the one transport-error mapper (:func:`map_transport_errors`), which turns aiohttp's and
  httpx's exceptions into ``ProviderTimeoutError`` / ``ProviderConnectionError`` /
  ``ProviderResponseError`` at the boundary;
* the one status mapper (:func:`error_for_status`, :func:`error_from_response`), which turns an
  HTTP error answer into the right :class:`~somaagent.errors.ProviderError` subclass, with the
  vendor's own message and the ``retry_after`` it asked for;
* a small Server-Sent Events reader (:func:`aiter_sse`) used by the streaming adapters;
* the proxy from the environment (:func:`env_proxy`), read once per URL.

Both OpenAI and Anthropic (and most compatible servers) wrap errors in the same envelope,
``{"error": {"message": ..., "type": ...}}``, so one body reader serves both.

Why aiohttp for the chat adapters
---------------------------------

The gateway's hot path is one upstream call per request, and on a small machine the client
side of that call dominated the gateway's CPU. Measured with
``python bench/gateway_overhead.py --transports --rounds 5`` (each client alone in its process,
closed loop against ``bench/_upstream.py`` on loopback, the same ``POST /v1/chat/completions``
with ``json.loads`` of the answer; 2-core shared AMD EPYC, CPython 3.11, uvloop; median and
range over 5 interleaved rounds, in ``bench/results/gateway_overhead_transports.md``):

=========================================== ======================= =======================
client CPU per request                       1 connection            32 connections
=========================================== ======================= =======================
httpx 0.28 ``AsyncClient`` (httpcore pool)   0.40 ms (0.40-0.41)     1.75 ms (1.67-1.77)
httpx 0.28 on an aiohttp transport           0.22 ms (0.20-0.24)     0.19 ms (0.18-0.19)
aiohttp 3.14 ``ClientSession``               0.066 ms (0.062-0.084)  0.054 ms (0.052-0.054)
=========================================== ======================= =======================

httpcore's pool probes every pooled socket with ``poll()`` and rescans its connection list
(quadratically) on each request, which is why httpx gets *slower per request* as connections
are added. A transport without httpcore removes that, but httpx's own request/response layer
still costs about 0.15 ms, more than twice aiohttp's whole round trip. So the chat adapters
use aiohttp directly: 3.3-3.5x less client CPU than the best httpx set-up measured, 6x less
than the default at 1 connection and 32x less at 32. In the whole gateway (the benchmark's
default mode), this and making the ``State`` dependency ``async`` took the CPU per request at
32 connections from 2.6 ms to about 0.4 ms. The httpx client stays for callers that are not on
the per-request path.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import email.utils
import functools
import json
import re
import ssl
import time
import urllib.parse
import urllib.request
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from aiohttp.http_exceptions import ContentEncodingError

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
    "KEEPALIVE_SECONDS",
    "POOL_LIMIT",
    "USER_AGENT",
    "SSEEvent",
    "aclose_client",
    "aiter_sse",
    "check_base_url",
    "decode_body",
    "env_proxy",
    "error_for_status",
    "error_from_response",
    "get_client",
    "get_session",
    "map_transport_errors",
    "parse_retry_after",
    "request_timeout",
    "timeout_for",
    "vendor_error",
]

USER_AGENT = "somaagent"
POOL_LIMIT = 200  # connections open at once, over all hosts, per event loop
KEEPALIVE_SECONDS = 30.0

# The httpx client's settings (the same limits as the aiohttp pool).
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
DEFAULT_LIMITS = httpx.Limits(
    max_connections=POOL_LIMIT, max_keepalive_connections=40, keepalive_expiry=KEEPALIVE_SECONDS
)

# Connections belong to the event loop that opened them, so the shared pools are kept per loop;
# a loop that is garbage-collected drops its entries.
_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
    weakref.WeakKeyDictionary()
)
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def get_session() -> aiohttp.ClientSession:
    """Return the shared aiohttp session of the running event loop, creating it on first use.

    Every chat adapter sends through this session unless it was given its own, so all models
    share one connection pool (at most :data:`POOL_LIMIT` connections, idle ones kept for
    :data:`KEEPALIVE_SECONDS`). Close it with :func:`aclose_client` when the loop's work is done
    (the gateway does so on shutdown).

    The session sends ``User-Agent: somaagent``, never follows redirects on its own (callers pass
    ``allow_redirects=False``) and has no default timeout: each request passes
    :func:`request_timeout`. It verifies TLS against the certificates httpx trusted
    (``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` when set, else certifi's bundle), so moving off
    httpx changes no trust decision. It does not read proxies from the environment on every
    request; callers pass :func:`env_proxy` instead.

    Returns:
        The process-wide :class:`aiohttp.ClientSession` for the current event loop.
    """
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=POOL_LIMIT, keepalive_timeout=KEEPALIVE_SECONDS, ssl=_tls_context()
            ),
            headers={"user-agent": USER_AGENT},
            timeout=aiohttp.ClientTimeout(total=None),
        )
        _sessions[loop] = session
    return session


def get_client() -> httpx.AsyncClient:
    """Return the shared httpx client of the running event loop, creating it on first use.

    For the callers still written on httpx (the memory embedders, which send a few large
    batches rather than one request per gateway call); the chat adapters use
    :func:`get_session`. Close it with :func:`aclose_client`.

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
            headers={"user-agent": USER_AGENT},
        )
        _clients[loop] = client
    return client


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # httpx's own default context, built once (loading the CA bundle takes milliseconds).
    return httpx.create_ssl_context()


async def aclose_client() -> None:
    """Close the running loop's shared session and client, if it has them; the next use opens
    new ones."""
    loop = asyncio.get_running_loop()
    session = _sessions.pop(loop, None)
    client = _clients.pop(loop, None)
    if session is not None:
        await session.close()
    if client is not None:
        await client.aclose()


@functools.lru_cache(maxsize=64)
def request_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """The per-request aiohttp timeout: ``seconds`` to get a connection (from the pool or a new
    one), and ``seconds`` for *each* read of the answer, headers or body, with no limit on the
    whole exchange (a stream that keeps sending is never cut)."""
    return aiohttp.ClientTimeout(
        total=None, connect=seconds, sock_connect=seconds, sock_read=seconds
    )


def timeout_for(seconds: float) -> httpx.Timeout:
    """The per-request httpx timeout: ``seconds`` to connect, and for each read, write and pool
    wait."""
    return httpx.Timeout(seconds)


@functools.lru_cache(maxsize=256)
def env_proxy(url: str) -> str | None:
    """The proxy the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``, ...) names for
    ``url``, or ``None``; read once per URL, since reading it per request costs more than the
    request itself.

    httpx honoured these variables by default; aiohttp only does when asked to, and then reads
    them (and ``~/.netrc``) on every request, so the adapters pass this instead.
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    if not host or urllib.request.proxy_bypass(host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all") or None


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


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One Server-Sent Event: its ``event`` name (``message`` when unnamed) and ``data``."""

    event: str
    data: str


# The event-stream format ends a line with CRLF, LF or a lone CR, and with nothing else.
_LINE_END = re.compile(r"\r\n|\r|\n")


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """Split a UTF-8 byte stream into lines at CRLF, LF or CR, whatever the chunk boundaries."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    async for chunk in chunks:
        pending += decoder.decode(chunk)
        if not pending:
            continue
        # A CR at the end of a chunk may be the first half of a CRLF: keep it for the next one.
        held = "\r" if pending[-1] == "\r" else ""
        lines = _LINE_END.split(pending[:-1] if held else pending)
        pending = lines.pop() + held
        for line in lines:
            yield line
    pending += decoder.decode(b"", final=True)
    if pending:
        lines = _LINE_END.split(pending)
        if not lines[-1]:
            lines.pop()  # the body ended with a line break: no line after it
        for line in lines:
            yield line


def _body_chunks(response: aiohttp.ClientResponse | httpx.Response) -> AsyncIterator[bytes]:
    if isinstance(response, httpx.Response):
        return response.aiter_bytes()
    return response.content.iter_any()


async def aiter_sse(response: aiohttp.ClientResponse | httpx.Response) -> AsyncIterator[SSEEvent]:
    """Parse a ``text/event-stream`` body into events, following the WHATWG rules we need.

    Lines end at CRLF, LF or a lone CR (and nowhere else); comment lines (``:``) and unknown
    fields are skipped; multi-line ``data`` is joined with newlines; an event is dispatched at a
    blank line. A final event that is not followed by a blank line is still dispatched (some
    servers omit it), so callers decide completeness from the events themselves, never from a
    clean end of the body.

    Args:
        response: an aiohttp or httpx response whose body has not been read yet.
    """
    event = ""
    data: list[str] = []
    async for line in _lines(_body_chunks(response)):
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


def encode_json(body: Mapping[str, Any]) -> bytes:
    """A request body as the vendors expect it: compact UTF-8 JSON, no NaN or infinity."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: Mapping[str, Any],
    *,
    provider: str,
    headers: Mapping[str, str],
    timeout: aiohttp.ClientTimeout,
    proxy: str | None,
) -> Any:
    """POST ``body`` and decode the JSON answer (a non-2xx answer raises its ProviderError;
    an answer that is not JSON raises :class:`ProviderResponseError`)."""
    with map_transport_errors(provider, method="POST", url=url):
        async with session.post(
            url,
            data=encode_json(body),
            headers=headers,
            timeout=timeout,
            proxy=proxy,
            allow_redirects=False,
        ) as response:
            if not 200 <= response.status < 300:
                raise await error_from_response(response, provider=provider)
            raw = await response.read()
    try:
        return json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", errors="replace")
        raise ProviderResponseError(
            f"the answer is not JSON: {text[:200]!r}", provider=provider
        ) from None
