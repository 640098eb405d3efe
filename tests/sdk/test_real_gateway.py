"""The SDK and the CLI against the real gateway (SQLite, a fake OpenAI upstream), on loopback.

The stub-gateway tests pin the client's behaviour; these check that it holds against the
server that ships, over real HTTP with a real lifespan.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from somaagent import (
    AsyncClient,
    AuthenticationError,
    Client,
    MessageExchange,
    NotFoundError,
    UpstreamError,
    ValidationError,
)
from somaagent.cli import main
from tests.fakes._server import run_asgi
from tests.fakes.fixtures import FakeVendor

MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class Running:
    base_url: str
    admin_key: str


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_openai: FakeVendor) -> Iterator[Running]:
    from somaagent.gateway.app import create_app
    from somaagent.gateway.settings import Settings

    data = tmp_path_factory.mktemp("gateway")
    settings = Settings(
        data_dir=data,
        database_url=f"sqlite+aiosqlite:///{data / 'soma.db'}",
        openai_base_url=fake_openai.base_url,
        openai_api_key=fake_openai.api_key,
        default_model=MODEL,
        rate_limit_per_minute=0,
        provider_timeout_s=5.0,
    )
    admin: list[str] = []
    app = create_app(settings, on_admin_key=admin.append)
    with run_asgi(app, lifespan="on") as url:
        yield Running(base_url=url, admin_key=admin[0])


@pytest.fixture
def client(gateway: Running, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    with Client(api_key=gateway.admin_key, base_url=gateway.base_url) as client:
        monkeypatch.setattr(client, "_sleep", lambda seconds: None)
        yield client


def test_me_and_models(client: Client) -> None:
    assert client.me()["scope"] == "admin"
    assert MODEL in {m.id for m in client.models.list()}


def test_conversation_round_trip(client: Client) -> None:
    conversation = client.conversations.create("SDK test", metadata={"from": "sdk"})
    assert client.conversations.get(conversation.id).metadata == {"from": "sdk"}
    exchange = client.conversations.send_message(conversation.id, "hello gateway")
    assert exchange.reply.content == "Echo: hello gateway"
    assert exchange.reply.usage is not None
    page = client.conversations.messages(conversation.id)
    assert [m.id for m in page.data] == [exchange.message.id, exchange.reply.id]
    assert conversation.id in {c.id for c in client.conversations.list(limit=100).data}
    client.conversations.delete(conversation.id)
    with pytest.raises(NotFoundError):
        client.conversations.get(conversation.id)


def test_a_repeated_idempotency_key_sends_once(client: Client) -> None:
    conversation = client.conversations.create()
    first = client.conversations.send_message(conversation.id, "once", idempotency_key="k-1")
    again = client.conversations.send_message(conversation.id, "once", idempotency_key="k-1")
    assert again.reply.id == first.reply.id
    assert len(client.conversations.messages(conversation.id).data) == 2


def test_streaming(client: Client) -> None:
    conversation = client.conversations.create()
    with client.conversations.stream_message(conversation.id, "stream me") as stream:
        text = "".join(stream.text_deltas())
    assert text == "Echo: stream me"
    assert stream.exchange is not None
    assert stream.exchange.reply.content == text


def test_an_upstream_failure_mid_stream_raises(client: Client) -> None:
    conversation = client.conversations.create()
    with (
        client.conversations.stream_message(conversation.id, "x [[stream_error]]") as stream,
        pytest.raises(UpstreamError),
    ):
        list(stream)


def test_problems_map_to_exceptions(client: Client, gateway: Running) -> None:
    conversation = client.conversations.create()
    with pytest.raises(ValidationError) as info:
        client.conversations.send_message(conversation.id, "hi", temperature=9)
    assert info.value.errors and info.value.request_id
    with (
        Client(api_key="soma_sk_nope", base_url=gateway.base_url) as stranger,
        pytest.raises(AuthenticationError),
    ):
        stranger.me()


@pytest.mark.anyio
async def test_the_async_client(gateway: Running) -> None:
    async with AsyncClient(api_key=gateway.admin_key, base_url=gateway.base_url) as client:
        exchange = await client.chat("hi async")
        assert exchange.reply.content == "Echo: hi async"
        stream = client.conversations.stream_message(exchange.reply.conversation_id, "more")
        async with stream:
            assert (await stream.final_exchange()).reply.content == "Echo: more"


def test_the_cli(gateway: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOMA_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("SOMA_API_KEY", raising=False)
    runner = CliRunner()
    login = ["login", "--base-url", gateway.base_url, "--api-key", gateway.admin_key]
    assert runner.invoke(main, login).exit_code == 0
    result = runner.invoke(main, ["chat", "hello cli", "--json"])
    assert result.exit_code == 0, result.output
    assert MessageExchange.model_validate_json(result.stdout).reply.content == "Echo: hello cli"
    missing = runner.invoke(main, ["conversations", "show", "conv_does_not_exist"])
    assert missing.exit_code == 3


def test_chat_with_a_stored_prompt(
    gateway: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_openai: FakeVendor
) -> None:
    monkeypatch.setenv("SOMA_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("SOMA_API_KEY", gateway.admin_key)
    monkeypatch.setenv("SOMA_BASE_URL", gateway.base_url)
    with Client() as client:
        client.prompts.create(
            "greeter",
            "Greet {{ who }} {{ times }} times.",
            role="system",
            variables=[
                {"name": "who", "type": "string"},
                {"name": "times", "type": "integer"},
            ],
        )
    runner = CliRunner()
    fake_openai.clear()
    result = runner.invoke(
        main,
        ["chat", "hi", "--prompt", "greeter", "--var", "who=Ada", "--var", "times=2", "--json"],
    )
    assert result.exit_code == 0, result.output
    sent = fake_openai.requests.snapshot()[-1].json["messages"]
    assert sent[0] == {"role": "system", "content": "Greet Ada 2 times."}
    bad = runner.invoke(main, ["chat", "hi", "--prompt", "greeter", "--var", "times=two"])
    assert bad.exit_code == 2
    assert "times" in bad.output


def test_faults_set_read_and_clear_and_the_model_call_fails_meanwhile(client: Client) -> None:
    from somaagent import FaultCreate, ServiceUnavailableError

    point = client.faults.set("model", FaultCreate(abort=True, ttl_s=30, experiment="sdk"))
    assert point.fault is not None and point.fault.abort and point.expires_at is not None
    assert [p.name for p in client.faults.list()] == ["vector-store", "embedder", "model"]
    # one try (no SDK retries): a gateway call and its retry, short of opening the breaker
    with (
        Client(api_key=client.api_key, base_url=client.base_url, max_retries=0) as once,
        pytest.raises(ServiceUnavailableError, match="fault injected by sdk"),
    ):
        once.chat("hello", model=MODEL)
    client.faults.clear("model")
    assert client.faults.get("model").fault is None
    assert client.chat("hello", model=MODEL).reply.content
    client.faults.set("vector-store", FaultCreate(latency_ms=1))
    client.faults.clear_all()
    assert all(p.fault is None for p in client.faults.list())
    with pytest.raises(NotFoundError, match="no fault point"):
        client.faults.get("database")


@pytest.mark.anyio
async def test_async_faults(gateway: Running) -> None:
    from somaagent import FaultCreate

    async with AsyncClient(api_key=gateway.admin_key, base_url=gateway.base_url) as client:
        point = await client.faults.set("embedder", FaultCreate(latency_ms=5, ttl_s=10))
        assert point.fault is not None and point.fault.latency_ms == 5
        await client.faults.clear("embedder")
        assert (await client.faults.get("embedder")).fault is None
