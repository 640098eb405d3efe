"""Client configuration: keyword arguments, environment fallbacks, request headers."""

from __future__ import annotations

import httpx
import pytest

import somaagent
from somaagent import AsyncClient, Client, ConfigurationError
from somaagent.sdk._base import DEFAULT_BASE_URL


def _recording_client(seen: list[httpx.Request], **kwargs: object) -> Client:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"key_id": "k", "name": "n", "tenant": "t", "scope": "admin"}
        )

    http = httpx.Client(transport=httpx.MockTransport(handler))
    return Client(http_client=http, **kwargs)  # type: ignore[arg-type]


def test_missing_key_is_a_precise_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as info:
        Client()
    message = str(info.value)
    assert "api_key=" in message
    assert "SOMA_API_KEY" in message


def test_empty_key_is_refused_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOMA_API_KEY", "")
    with pytest.raises(ConfigurationError, match="SOMA_API_KEY"):
        AsyncClient()


def test_key_and_base_url_fall_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOMA_API_KEY", "soma_sk_from_env")
    monkeypatch.setenv("SOMA_BASE_URL", "https://gateway.example/")
    with Client() as client:
        assert client.api_key == "soma_sk_from_env"
        assert client.base_url == "https://gateway.example"


def test_arguments_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOMA_API_KEY", "soma_sk_from_env")
    monkeypatch.setenv("SOMA_BASE_URL", "https://gateway.example")
    with Client(api_key="soma_sk_arg", base_url="http://localhost:9000") as client:
        assert client.api_key == "soma_sk_arg"
        assert client.base_url == "http://localhost:9000"


def test_base_url_defaults_to_the_local_gateway() -> None:
    with Client(api_key="soma_sk_x") as client:
        assert client.base_url == DEFAULT_BASE_URL == "http://127.0.0.1:8080"


def test_a_base_url_without_scheme_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="http://"):
        Client(api_key="soma_sk_x", base_url="gateway.example:8080")


def test_negative_max_retries_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="max_retries"):
        Client(api_key="soma_sk_x", max_retries=-1)


def test_requests_carry_auth_user_agent_and_timeout() -> None:
    seen: list[httpx.Request] = []
    with _recording_client(seen, api_key="soma_sk_secret", timeout=7.5) as client:
        client.me()
    (request,) = seen
    assert request.url == "http://127.0.0.1:8080/v1/me"
    assert request.headers["authorization"] == "Bearer soma_sk_secret"
    assert request.headers["user-agent"] == f"somaagent-python/{somaagent.__version__}"
    assert request.extensions["timeout"]["read"] == 7.5
    assert "idempotency-key" not in request.headers  # only POSTs carry one


def test_every_post_gets_its_own_idempotency_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        now = "2025-01-01T00:00:00Z"
        return httpx.Response(201, json={"id": "c1", "created_at": now, "updated_at": now})

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with Client(api_key="soma_sk_x", http_client=http) as client:
        client.conversations.create("one")
        client.conversations.create("two")
    keys = [r.headers["idempotency-key"] for r in seen]
    assert len(set(keys)) == 2
    assert all(key.startswith("soma-") for key in keys)


def test_a_base_url_with_a_path_prefix_is_kept() -> None:
    seen: list[httpx.Request] = []
    with _recording_client(seen, api_key="k", base_url="https://proxy.example/soma/") as client:
        client.me()
    assert seen[0].url == "https://proxy.example/soma/v1/me"


def test_ids_are_escaped_in_paths() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with Client(api_key="k", http_client=http) as client:
        client.conversations.delete("../me")
        with pytest.raises(ValueError, match="non-empty"):
            client.conversations.delete("")
    assert seen[0].url.raw_path == b"/v1/conversations/..%2Fme"


def test_the_client_closes_its_http_client() -> None:
    with Client(api_key="k") as client:
        assert not client.is_closed
    assert client.is_closed
    assert client._http.is_closed


def test_a_given_http_client_is_closed_with_the_client() -> None:
    http = httpx.Client()
    with Client(api_key="k", http_client=http):
        pass
    assert http.is_closed


@pytest.mark.anyio
async def test_the_async_client_closes_its_http_client() -> None:
    http = httpx.AsyncClient()
    async with AsyncClient(api_key="k", http_client=http) as client:
        assert not client.is_closed
    assert client.is_closed
    assert http.is_closed


def test_repr_never_shows_the_key() -> None:
    with Client(api_key="soma_sk_secret", base_url="http://x") as client:
        assert "soma_sk_secret" not in repr(client)
