"""The process-wide connection pools, one per running event loop, their timeouts, proxies and
base URLs (see the package docstring for why the chat adapters use aiohttp)."""

from __future__ import annotations

import asyncio
import functools
import ssl
import urllib.parse
import urllib.request
import weakref

import aiohttp
import httpx

from somaagent.errors import (
    ConfigurationError,
)

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
