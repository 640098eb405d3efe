"""Retries: which failures, how long between them, and one Idempotency-Key throughout."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from somaagent import (
    APIConnectionError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    BusyError,
    Client,
    ConflictError,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
    ValidationError,
)
from somaagent.errors import APIError, UpstreamError
from somaagent.sdk import RetryEvent
from somaagent.sdk._base import RetryPolicy, parse_retry_after
from tests.sdk.stub_gateway import ALICE_KEY, StubGateway


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried_until_success(
    client: Client, stub: StubGateway, sleeps: list[float], status: int
) -> None:
    stub.fail_next(2, status)
    assert client.me()["tenant"] == "acme"
    assert len(stub.requests_to("/v1/me")) == 3
    assert len(sleeps) == 2


def test_a_busy_conflict_is_retried_after_its_retry_after(
    client: Client, stub: StubGateway, sleeps: list[float]
) -> None:
    # an earlier request with the same Idempotency-Key still in flight: passes by itself
    stub.fail_next(2, 409, error=BusyError, retry_after=1)
    assert client.me()["tenant"] == "acme"
    assert len(stub.requests_to("/v1/me")) == 3
    assert sleeps == [1.0, 1.0]


def test_any_other_conflict_is_raised_at_once(
    client: Client, stub: StubGateway, sleeps: list[float]
) -> None:
    # a finished run cancelled, a changed capsule without a version bump: the same every time
    stub.fail_next(2, 409)
    with pytest.raises(ConflictError) as info:
        client.me()
    assert not isinstance(info.value, BusyError)
    assert len(stub.requests_to("/v1/me")) == 1
    assert sleeps == []


def test_backoff_doubles_with_jitter(
    client: Client, stub: StubGateway, sleeps: list[float]
) -> None:
    stub.fail_next(2, 502)
    client.me()
    first, second = sleeps
    assert 0.375 <= first <= 0.5  # 0.5 s less up to 25 % jitter
    assert 0.75 <= second <= 1.0


def test_retry_after_is_honoured(client: Client, stub: StubGateway, sleeps: list[float]) -> None:
    stub.fail_next(2, 429, retry_after=1.5)
    client.me()
    assert sleeps == [1.5, 1.5]


def test_retry_after_on_503_is_honoured(
    client: Client, stub: StubGateway, sleeps: list[float]
) -> None:
    stub.fail_next(1, 503, retry_after=4)
    client.me()
    assert sleeps == [4.0]


def test_retries_give_up_after_max_retries(
    client: Client, stub: StubGateway, sleeps: list[float]
) -> None:
    stub.fail_next(5, 429, retry_after=2)
    with pytest.raises(RateLimitError) as info:
        client.me()
    assert info.value.retry_after == 2
    assert len(stub.requests_to("/v1/me")) == 3  # the first try and max_retries=2 more
    assert sleeps == [2.0, 2.0]


def test_a_retry_after_too_long_to_wait_raises_at_once(
    client: Client, stub: StubGateway, sleeps: list[float]
) -> None:
    stub.fail_next(1, 429, retry_after=3600)
    with pytest.raises(RateLimitError) as info:
        client.me()
    assert info.value.retry_after == 3600
    assert sleeps == []


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (404, NotFoundError),
        (422, ValidationError),
    ],
)
def test_client_errors_are_not_retried(
    client: Client, stub: StubGateway, sleeps: list[float], status: int, cls: type[APIError]
) -> None:
    stub.fail_next(1, status)
    with pytest.raises(cls):
        client.me()
    assert len(stub.requests_to("/v1/me")) == 1
    assert sleeps == []


def test_a_post_keeps_its_idempotency_key_across_retries(
    client: Client, stub: StubGateway, sleeps: list[float]
) -> None:
    conversation = client.conversations.create("retry me")
    path = f"/v1/conversations/{conversation.id}/messages"
    stub.fail_next(2, 503, path=path)
    exchange = client.conversations.send_message(conversation.id, "hello")
    assert exchange.reply.content == "Echo: hello"
    keys = [r.headers["idempotency-key"] for r in stub.requests_to(path, "POST")]
    assert len(keys) == 3
    assert len(set(keys)) == 1
    # and the message was stored once
    assert len(client.conversations.messages(conversation.id).data) == 2


def test_a_caller_idempotency_key_is_sent_and_deduplicates(
    client: Client, stub: StubGateway
) -> None:
    conversation = client.conversations.create()
    first = client.conversations.send_message(conversation.id, "hi", idempotency_key="my-key-1")
    again = client.conversations.send_message(conversation.id, "hi", idempotency_key="my-key-1")
    assert again == first
    path = f"/v1/conversations/{conversation.id}/messages"
    assert {r.headers["idempotency-key"] for r in stub.requests_to(path, "POST")} == {"my-key-1"}


def test_a_stream_request_is_retried_before_it_starts(
    client: Client, stub: StubGateway, sleeps: list[float]
) -> None:
    conversation = client.conversations.create()
    path = f"/v1/conversations/{conversation.id}/messages"
    stub.fail_next(1, 502, path=path)
    with client.conversations.stream_message(conversation.id, "hi there") as stream:
        assert "".join(stream.text_deltas()) == "Echo: hi there"
    keys = {r.headers["idempotency-key"] for r in stub.requests_to(path, "POST")}
    assert len(keys) == 1
    assert len(sleeps) == 1


def test_max_retries_zero_never_retries(base_url: str, stub: StubGateway) -> None:
    stub.fail_next(1, 503)
    with (
        Client(api_key=ALICE_KEY, base_url=base_url, max_retries=0) as client,
        pytest.raises(ServiceUnavailableError),
    ):
        client.me()
    assert len(stub.requests_to("/v1/me")) == 1


def test_connection_errors_are_retried_with_the_same_key(
    sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) < 3:
            raise httpx.ConnectError("refused", request=request)
        now = "2025-01-01T00:00:00Z"
        return httpx.Response(201, json={"id": "c1", "created_at": now, "updated_at": now})

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with Client(api_key="k", http_client=http) as client:
        monkeypatch.setattr(client, "_sleep", sleeps.append)
        assert client.conversations.create().id == "c1"
    assert len({r.headers["idempotency-key"] for r in seen}) == 1
    assert len(sleeps) == 2


@pytest.mark.anyio
async def test_async_retries_honour_retry_after(
    async_client: AsyncClient, stub: StubGateway, sleeps: list[float]
) -> None:
    conversation = await async_client.conversations.create()
    path = f"/v1/conversations/{conversation.id}/messages"
    stub.fail_next(2, 429, retry_after=0.25, path=path)
    exchange = await async_client.conversations.send_message(conversation.id, "hey")
    assert exchange.reply.content == "Echo: hey"
    assert sleeps == [0.25, 0.25]
    assert len({r.headers["idempotency-key"] for r in stub.requests_to(path, "POST")}) == 1


@pytest.mark.anyio
async def test_async_client_errors_are_not_retried(
    async_client: AsyncClient, stub: StubGateway, sleeps: list[float]
) -> None:
    stub.fail_next(1, 400)
    with pytest.raises(BadRequestError):
        await async_client.me()
    assert sleeps == []


def test_the_policy_caps_the_backoff() -> None:
    policy = RetryPolicy(max_retries=10)
    error = UpstreamError("boom")
    delays = [policy.delay(attempt, error, rand=lambda: 0.0) for attempt in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert policy.delay(0, error, rand=lambda: 1.0) == 0.375
    assert policy.delay(10, error) is None
    assert policy.delay(0, APIConnectionError("down"), rand=lambda: 0.0) == 0.5
    assert policy.delay(0, BadRequestError("no")) is None


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "0.5"}) == 0.5
    assert parse_retry_after({"retry-after": "-3"}) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    seconds = parse_retry_after({"Retry-After": later})
    assert seconds is not None
    assert 28 <= seconds <= 30


def test_on_retry_hears_of_each_wait(
    client: Client, stub: StubGateway, sleeps: list[float]
) -> None:
    events: list[RetryEvent] = []
    client.on_retry = events.append
    stub.fail_next(1, 429, retry_after=2)
    stub.fail_next(1, 503)
    client.me()
    assert [e.attempt for e in events] == [1, 2]
    assert [e.delay for e in events] == sleeps
    assert events[0].describe() == "rate limited, retrying in 2 s"
    assert isinstance(events[0].error, RateLimitError)
    assert re.fullmatch(r"the gateway answered 503, retrying in (0\.\d|1) s", events[1].describe())


@pytest.mark.anyio
async def test_the_async_on_retry_hears_of_each_wait(
    async_client: AsyncClient, stub: StubGateway, sleeps: list[float]
) -> None:
    events: list[RetryEvent] = []
    async_client.on_retry = events.append
    stub.fail_next(2, 429, retry_after=1.5)
    await async_client.me()
    assert [e.describe() for e in events] == ["rate limited, retrying in 1.5 s"] * 2


def test_no_event_when_the_error_is_raised(client: Client, stub: StubGateway) -> None:
    events: list[RetryEvent] = []
    client.on_retry = events.append
    stub.fail_next(3, 429, retry_after=1)
    with pytest.raises(RateLimitError):
        client.me()
    assert len(events) == 2  # two retries announced; the third failure is raised, not retried
