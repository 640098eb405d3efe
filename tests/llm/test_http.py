"""The shared HTTP plumbing: Retry-After parsing, the status and transport mappers, SSE."""

from __future__ import annotations

import email.utils

import httpx
import pytest

from somaagent.errors import (
    ProviderAuthenticationError,
    ProviderBadRequestError,
    ProviderConnectionError,
    ProviderOverloadedError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderTimeoutError,
)
from somaagent.llm._http import (
    SSEEvent,
    aclose_client,
    aiter_sse,
    error_for_status,
    get_client,
    map_transport_errors,
    parse_retry_after,
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


def test_map_transport_errors_leaves_other_exceptions_alone() -> None:
    with pytest.raises(KeyError):
        raise_inside(KeyError("x"))


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


@pytest.mark.anyio
async def test_the_shared_client_is_per_loop_and_reopens_after_close() -> None:
    client = get_client()
    assert get_client() is client

    await aclose_client()

    assert client.is_closed
    reopened = get_client()
    assert reopened is not client
    await aclose_client()
