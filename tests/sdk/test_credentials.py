"""``Client()`` and ``AsyncClient()`` find their key as the CLI does: the argument, then the
environment, then the credentials ``soma login`` stored; and against the real gateway."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from somaagent import AsyncClient, Client, ConfigurationError
from somaagent.cli import main
from tests.cli.gateway import Gateway, serve_gateway
from tests.fakes.fixtures import FakeVendor


def _store(api_key: str, base_url: str = "http://stored.example:9000") -> Path:
    path = Path(os.environ["SOMA_CONFIG_DIR"]) / "credentials.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"api_key": api_key, "base_url": base_url}))
    return path


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_the_stored_credentials_are_the_last_resort(
    cls: type[Client] | type[AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    _store("soma_sk_stored")
    stored = cls()
    assert (stored.api_key, stored.base_url) == ("soma_sk_stored", "http://stored.example:9000")

    monkeypatch.setenv("SOMA_API_KEY", "soma_sk_env")
    monkeypatch.setenv("SOMA_BASE_URL", "http://env.example")
    from_env = cls()
    assert (from_env.api_key, from_env.base_url) == ("soma_sk_env", "http://env.example")

    given = cls(api_key="soma_sk_arg", base_url="http://arg.example")
    assert (given.api_key, given.base_url) == ("soma_sk_arg", "http://arg.example")


def test_without_any_key_the_error_names_all_three_places() -> None:
    with pytest.raises(ConfigurationError) as info:
        Client()
    message = str(info.value)
    assert "api_key=" in message and "SOMA_API_KEY" in message and "soma login" in message


def test_a_broken_credentials_file_is_a_precise_error() -> None:
    path = _store("x")
    path.write_text("{not json")
    with pytest.raises(ConfigurationError, match="run `soma login` again"):
        Client()


def test_a_stored_key_without_url_uses_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    path = _store("soma_sk_stored")
    path.write_text(json.dumps({"api_key": "soma_sk_stored"}))
    assert Client().base_url == "http://127.0.0.1:8080"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_openai: FakeVendor) -> Iterator[Gateway]:
    pytest.importorskip("fastapi", reason="the real gateway needs the server extra")
    with serve_gateway(tmp_path_factory.mktemp("credentials"), fake_openai) as running:
        yield running


def test_after_soma_login_the_sdk_needs_no_key(gateway: Gateway) -> None:
    login = CliRunner().invoke(
        main, ["login", "--base-url", gateway.base_url], input=f"{gateway.admin_key}\n"
    )
    assert login.exit_code == 0, login.output
    with Client() as client:
        assert client.base_url == gateway.base_url
        assert client.me()["scope"] == "admin"
        assert client.chat("stored key").reply.content == "Echo: stored key"


@pytest.mark.anyio
async def test_the_async_client_uses_the_stored_key_too(gateway: Gateway) -> None:
    _store(gateway.admin_key, gateway.base_url)
    async with AsyncClient() as client:
        assert (await client.me())["scope"] == "admin"
