"""The HTTP client plumbing shared by the model adapters (``llm``) and the remote embedders
(``memory``); no vendor wire formats here.

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

from somaagent.http.calls import encode_json, post_json
from somaagent.http.failures import (
    decode_body,
    error_for_status,
    error_from_response,
    map_transport_errors,
    parse_retry_after,
    vendor_error,
)
from somaagent.http.pools import (
    DEFAULT_LIMITS,
    DEFAULT_TIMEOUT,
    KEEPALIVE_SECONDS,
    POOL_LIMIT,
    USER_AGENT,
    aclose_client,
    check_base_url,
    env_proxy,
    get_client,
    get_session,
    request_timeout,
    timeout_for,
)
from somaagent.http.sse import SSEEvent, aiter_sse

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
    "encode_json",
    "env_proxy",
    "error_for_status",
    "error_from_response",
    "get_client",
    "get_session",
    "map_transport_errors",
    "parse_retry_after",
    "post_json",
    "request_timeout",
    "timeout_for",
    "vendor_error",
]
