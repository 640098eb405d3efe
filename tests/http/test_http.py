"""The shared HTTP plumbing: Retry-After parsing, the status and transport mappers, SSE."""

from __future__ import annotations

import email.utils
from collections.abc import AsyncIterator

import aiohttp
import httpx
import pytest
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError, ContentLengthError
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from somaagent.errors import (
    ProviderAuthenticationError,
    ProviderBadRequestError,
    ProviderConnectionError,
    ProviderOverloadedError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderTimeoutError,
)
from somaagent.http import (
    SSEEvent,
    aclose_client,
    aiter_sse,
    env_proxy,
    error_for_status,
    get_client,
    get_session,
    map_transport_errors,
    parse_retry_after,
    request_timeout,
)

NOW = 1_750_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # OpenAI's precise header wins
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"Retry-After": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
        ({"Retry-After": email.utils.formatdate(NOW - 30, usegmt=True)}, 0.0),
        ({"Retry-After": "-3"}, None),
        ({"Retry-After": "whenever"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


def test_parse_retry_after_reads_httpx_headers() -> None:
    assert parse_retry_after(httpx.Headers({"Retry-After": "2"})) == 2.0


def test_parse_retry_after_reads_aiohttp_headers() -> None:
    headers = CIMultiDictProxy(CIMultiDict({"Retry-After-Ms": "40"}))

    assert parse_retry_after(headers) == 0.04


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, None, ProviderAuthenticationError),
        (403, None, ProviderAuthenticationError),
        (400, None, ProviderBadRequestError),
        (409, None, ProviderBadRequestError),
        (422, None, ProviderBadRequestError),
        (429, None, ProviderRateLimitError),
        (500, None, ProviderResponseError),
        (503, None, ProviderOverloadedError),
        (529, None, ProviderOverloadedError),
        (504, None, ProviderTimeoutError),
        # Anthropic's overloaded_error is overloaded whatever the status says.
        (
            500,
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            ProviderOverloadedError,
        ),
    ],
)
def test_error_for_status_picks_the_class(
    status: int, body: object, expected: type[Exception]
) -> None:
    error = error_for_status(status, provider="p", body=body)

    assert type(error) is expected
    assert error.status_code == status
    assert error.provider == "p"


def test_error_for_status_keeps_the_vendor_message_and_retry_after() -> None:
    body = {"error": {"message": "Slow down.", "type": "requests", "code": "rate_limit_exceeded"}}

    error = error_for_status(429, provider="openai", body=body, headers={"retry-after-ms": "1500"})

    assert error.message == "Slow down. [rate_limit_exceeded]"
    assert error.retry_after == 1.5
    assert error.body == body
    assert str(error) == "openai: Slow down. [rate_limit_exceeded] (HTTP 429)"


def test_error_for_status_falls_back_to_a_text_body() -> None:
    error = error_for_status(502, provider="vllm", body="<html>Bad Gateway</html>")

    assert error.message == "<html>Bad Gateway</html>"


def test_error_for_status_reads_a_top_level_error_object() -> None:
    body = {"object": "error", "message": "model not loaded", "type": "NotFoundError", "code": 404}

    assert error_for_status(404, provider="vllm", body=body).message == "model not loaded"


def raise_inside(exc: Exception) -> None:
    with map_transport_errors("p"):
        raise exc


REQUEST = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (httpx.ConnectTimeout("slow", request=REQUEST), ProviderTimeoutError),
        (httpx.ReadTimeout("slow", request=REQUEST), ProviderTimeoutError),
        (httpx.PoolTimeout("busy", request=REQUEST), ProviderTimeoutError),
        (httpx.ConnectError("refused", request=REQUEST), ProviderConnectionError),
        (httpx.ReadError("reset", request=REQUEST), ProviderConnectionError),
        (httpx.RemoteProtocolError("closed", request=REQUEST), ProviderConnectionError),
        (httpx.DecodingError("bad gzip", request=REQUEST), ProviderResponseError),
    ],
)
def test_map_transport_errors(raised: Exception, expected: type[Exception]) -> None:
    with pytest.raises(expected) as caught:
        raise_inside(raised)

    assert caught.value.__cause__ is raised
    assert "http://127.0.0.1:9/v1/chat/completions" in str(caught.value)


URL_TEXT = "http://127.0.0.1:9/v1/chat/completions"


def payload_error(cause: Exception) -> aiohttp.ClientPayloadError:
    error = aiohttp.ClientPayloadError(f"Response payload is not completed: {cause!r}")
    error.__cause__ = cause  # how aiohttp attaches what went wrong with the body
    return error


def response_error() -> aiohttp.ClientResponseError:
    info = aiohttp.RequestInfo(URL(URL_TEXT), "POST", CIMultiDictProxy(CIMultiDict()))
    return aiohttp.ContentTypeError(info, (), message="unexpected mimetype")


@pytest.mark.parametrize(
    ("raised", "expected", "words"),
    [
        (aiohttp.ConnectionTimeoutError("timeout"), ProviderTimeoutError, "connecting timed out"),
        (
            aiohttp.SocketTimeoutError("Timeout on reading data from socket"),
            ProviderTimeoutError,
            "waiting for the answer timed out",
        ),
        (aiohttp.ServerDisconnectedError(), ProviderConnectionError, "ServerDisconnectedError"),
        (aiohttp.ClientOSError(104, "reset"), ProviderConnectionError, "reset"),
        (
            payload_error(ContentLengthError("Not enough data to satisfy content length")),
            ProviderConnectionError,
            "cut short",
        ),
        (
            payload_error(ContentEncodingError("Can not decode content-encoding: gzip")),
            ProviderResponseError,
            "gzip",
        ),
        (response_error(), ProviderResponseError, "unexpected mimetype"),
    ],
)
def test_map_transport_errors_of_aiohttp(
    raised: Exception, expected: type[Exception], words: str
) -> None:
    with pytest.raises(expected) as caught, map_transport_errors("p", method="POST", url=URL_TEXT):
        raise raised

    assert type(caught.value) is expected
    assert caught.value.__cause__ is raised
    assert f"(POST {URL_TEXT})" in str(caught.value)
    assert words in str(caught.value)


def test_map_transport_errors_leaves_other_exceptions_alone() -> None:
    with pytest.raises(KeyError):
        raise_inside(KeyError("x"))


def test_map_transport_errors_lets_provider_errors_through() -> None:
    error = error_for_status(429, provider="p")

    with pytest.raises(ProviderRateLimitError) as caught:
        raise_inside(error)

    assert caught.value is error


def test_request_timeout_is_per_read_with_no_total() -> None:
    timeout = request_timeout(2.5)

    assert (timeout.total, timeout.connect, timeout.sock_connect, timeout.sock_read) == (
        None,
        2.5,
        2.5,
        2.5,
    )
    assert request_timeout(2.5) is timeout  # built once per value


def test_env_proxy_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("https_proxy", "http://proxy.internal:3128")
    monkeypatch.setenv("no_proxy", "localhost,.corp.example")
    env_proxy.cache_clear()
    try:
        assert env_proxy("https://api.openai.com/v1/chat/completions") == (
            "http://proxy.internal:3128"
        )
        assert env_proxy("http://api.openai.com/v1/chat/completions") is None
        assert env_proxy("https://llm.corp.example/v1/chat/completions") is None
        assert env_proxy("http://localhost:8000/v1/chat/completions") is None
    finally:
        env_proxy.cache_clear()


@pytest.mark.anyio
async def test_aiter_sse_follows_the_event_stream_rules() -> None:
    body = (
        b": a comment\n"
        b"event: message_start\n"
        b'data: {"a":\n'
        b"data: 1}\n"
        b"id: 7\n"
        b"\n"
        b"\n"
        b"data:no-space\r\n"
        b"\r\n"
        b"data: [DONE]"  # the last event, without its blank line
    )
    response = httpx.Response(200, content=body)

    events = [event async for event in aiter_sse(response)]

    assert events == [
        SSEEvent("message_start", '{"a":\n1}'),
        SSEEvent("message", "no-space"),
        SSEEvent("message", "[DONE]"),
    ]


class ChunkedBody(httpx.AsyncByteStream):
    """A response body delivered in the given pieces, as a network would split it."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


# CRLF split across chunks, a lone CR as a line end, a UTF-8 character split across chunks.
AWKWARD_CHUNKS = [
    b"event: delta\r",
    b"\ndata: caf\xc3",
    b"\xa9\r\n\r",
    b"\n",
    b"data: one\rdata: two\r\r",
    b"data: last\r",
]
AWKWARD_EVENTS = [
    SSEEvent("delta", "café"),
    SSEEvent("message", "one\ntwo"),
    SSEEvent("message", "last"),
]


@pytest.mark.anyio
async def test_aiter_sse_splits_lines_whatever_the_chunk_boundaries() -> None:
    response = httpx.Response(200, stream=ChunkedBody(AWKWARD_CHUNKS))

    events = [event async for event in aiter_sse(response)]

    assert events == AWKWARD_EVENTS


@pytest.mark.anyio
async def test_aiter_sse_reads_an_aiohttp_stream() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for chunk in AWKWARD_CHUNKS:  # one write each, as a chunk of the chunked body
            await response.write(chunk)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/events", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{port}/events") as response,
        ):
            events = [event async for event in aiter_sse(response)]
    finally:
        await runner.cleanup()

    assert events == AWKWARD_EVENTS


@pytest.mark.anyio
async def test_the_shared_client_is_per_loop_and_reopens_after_close() -> None:
    client = get_client()
    assert get_client() is client

    await aclose_client()

    assert client.is_closed
    reopened = get_client()
    assert reopened is not client
    await aclose_client()


@pytest.mark.anyio
async def test_the_shared_session_is_per_loop_and_reopens_after_close() -> None:
    session = get_session()
    assert get_session() is session

    await aclose_client()

    assert session.closed
    reopened = get_session()
    assert reopened is not session
    await aclose_client()
    assert reopened.closed
