"""Error responses come back as the exception classes of ``somaagent.errors``."""

from __future__ import annotations

import socket

import httpx
import pytest

from somaagent import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
    ValidationError,
)
from tests.sdk.stub_gateway import ALICE_KEY, BOB_KEY, StubGateway

STATUS_CLASSES: list[tuple[int, type[APIError]]] = [
    (400, BadRequestError),
    (401, AuthenticationError),
    (403, PermissionDeniedError),
    (404, NotFoundError),
    (409, ConflictError),
    (413, PayloadTooLargeError),
    (422, ValidationError),
    (429, RateLimitError),
    (500, ServerError),
    (502, UpstreamError),
    (503, ServiceUnavailableError),
    (504, UpstreamTimeoutError),
]


@pytest.mark.parametrize(("status", "cls"), STATUS_CLASSES)
def test_each_status_maps_to_its_exception(
    base_url: str, stub: StubGateway, status: int, cls: type[APIError]
) -> None:
    stub.fail_next(1, status, retry_after=3 if status in (429, 503) else None)
    with (
        Client(api_key=ALICE_KEY, base_url=base_url, max_retries=0) as client,
        pytest.raises(APIError) as info,
    ):
        client.me()
    error = info.value
    assert type(error) is cls
    assert error.status_code == status
    assert error.problem_type == f"urn:somaagent:problem:{cls.slug}"
    assert error.request_id is not None
    assert error.request_id.startswith("req_")  # from the x-request-id header
    assert isinstance(error.body, dict)
    assert error.body["status"] == status
    if status in (429, 503):
        assert error.retry_after == 3  # type: ignore[attr-defined]


def test_an_unknown_conversation_is_not_found(client: Client) -> None:
    with pytest.raises(NotFoundError, match="conv_missing") as info:
        client.conversations.get("conv_missing")
    assert info.value.request_id


def test_another_tenants_conversation_is_not_found(client: Client, base_url: str) -> None:
    conversation = client.conversations.create("private")
    with (
        Client(api_key=BOB_KEY, base_url=base_url) as bob,
        pytest.raises(NotFoundError),
    ):
        bob.conversations.get(conversation.id)


def test_a_bad_key_is_an_authentication_error(base_url: str) -> None:
    with (
        Client(api_key="soma_sk_wrong", base_url=base_url) as client,
        pytest.raises(AuthenticationError, match="invalid API key"),
    ):
        client.me()


def test_validation_errors_name_the_fields(client: Client) -> None:
    conversation = client.conversations.create()
    with pytest.raises(ValidationError) as info:
        client.conversations.send_message(conversation.id, "hi", temperature=5.0)
    error = info.value
    assert error.status_code == 422
    assert [e["loc"] for e in error.errors] == [["body", "temperature"]]
    assert error.errors[0]["type"]


def test_an_out_of_range_limit_is_a_validation_error(client: Client) -> None:
    with pytest.raises(ValidationError) as info:
        client.conversations.list(limit=1000)
    assert info.value.errors[0]["loc"] == ["query", "limit"]


def test_a_non_json_error_body_keeps_its_text() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="Bad Gateway from nginx", headers={"x-request-id": "r1"})

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with (
        Client(api_key="k", http_client=http, max_retries=0) as client,
        pytest.raises(UpstreamError, match="nginx") as info,
    ):
        client.me()
    assert info.value.request_id == "r1"


def test_a_garbled_success_is_an_api_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>captive portal</html>")

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with (
        Client(api_key="k", http_client=http) as client,
        pytest.raises(APIError, match="unexpected answer to GET /v1/models"),
    ):
        client.models.list()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_gateway_is_a_connection_error(
    sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    with Client(api_key="k", base_url=url) as client:
        monkeypatch.setattr(client, "_sleep", sleeps.append)
        with pytest.raises(APIConnectionError, match="could not reach") as info:
            client.me()
    assert not isinstance(info.value, APITimeoutError)
    assert url in str(info.value)
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(sleeps) == 2  # connection errors are retried


def test_a_timeout_is_an_api_timeout_error(
    sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with Client(api_key="k", http_client=http, max_retries=1) as client:
        monkeypatch.setattr(client, "_sleep", sleeps.append)
        with pytest.raises(APITimeoutError, match="timed out"):
            client.me()
    assert len(sleeps) == 1


@pytest.mark.anyio
async def test_async_errors_map_the_same(async_client: AsyncClient, stub: StubGateway) -> None:
    with pytest.raises(NotFoundError):
        await async_client.conversations.get("conv_missing")
    stub.fail_next(1, 403)
    with pytest.raises(PermissionDeniedError):
        await async_client.me()


@pytest.mark.anyio
async def test_async_timeout_is_an_api_timeout_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("slow", request=request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with AsyncClient(api_key="k", http_client=http, max_retries=0) as client:
        with pytest.raises(APITimeoutError):
            await client.me()
