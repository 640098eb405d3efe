"""create_provider: built-in ids, keys from arguments or settings, plugins, precise errors."""

from __future__ import annotations

import sys
import types
from importlib.metadata import EntryPoint
from typing import Any

import pytest

import somaagent.llm.providers as providers
from somaagent.errors import ConfigurationError
from somaagent.llm.base import ChatRequest, Completion, Model, StreamChunk
from somaagent.llm.providers import ENTRY_POINT_GROUP, create_provider
from somaagent.llm.providers.anthropic import AnthropicModel
from somaagent.llm.providers.openai import OpenAIModel
from tests.fakes.fixtures import FakeVendor

SETTINGS = (
    "SOMA_OPENAI_API_KEY",
    "SOMA_OPENAI_BASE_URL",
    "SOMA_ANTHROPIC_API_KEY",
    "SOMA_ANTHROPIC_BASE_URL",
)


@pytest.fixture(autouse=True)
def no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)


class EchoModel(Model):
    """A plugin model, registered through the entry-point group in these tests."""

    provider = "echo"

    def __init__(self, **settings: Any) -> None:
        self.settings = settings

    async def complete(self, request: ChatRequest) -> Completion:
        return Completion(content="echo", model=request.model, provider=self.provider)

    async def stream(self, request: ChatRequest) -> Any:  # pragma: no cover - not called
        yield StreamChunk(delta="echo", finish_reason="stop")


def not_a_model(**settings: Any) -> object:
    return object()


def register(monkeypatch: pytest.MonkeyPatch, *entries: tuple[str, str]) -> None:
    """Stand in for installed distributions declaring ``somaagent.providers`` entry points."""
    points = [EntryPoint(name=n, value=v, group=ENTRY_POINT_GROUP) for n, v in entries]

    def entry_points(*, group: str, name: str | None = None) -> list[EntryPoint]:
        return [p for p in points if p.group == group and name in (None, p.name)]

    monkeypatch.setattr(providers, "entry_points", entry_points)


@pytest.mark.anyio
async def test_openai_adapter_from_arguments(fake_openai: FakeVendor, shared_pool: None) -> None:
    model = create_provider(
        "openai", api_key=fake_openai.api_key, base_url=fake_openai.base_url, timeout=5.0
    )

    assert isinstance(model, OpenAIModel)
    assert model.timeout == 5.0
    completion = await model.complete(
        ChatRequest(messages=[{"role": "user", "content": "hi"}], model="gpt-4o-mini")
    )
    assert completion.content == "Echo: hi"


@pytest.mark.anyio
async def test_anthropic_adapter_from_settings(
    fake_anthropic: FakeVendor, monkeypatch: pytest.MonkeyPatch, shared_pool: None
) -> None:
    monkeypatch.setenv("SOMA_ANTHROPIC_API_KEY", fake_anthropic.api_key)
    monkeypatch.setenv("SOMA_ANTHROPIC_BASE_URL", fake_anthropic.base_url)

    model = create_provider("anthropic")

    assert isinstance(model, AnthropicModel)
    completion = await model.complete(
        ChatRequest(messages=[{"role": "user", "content": "hi"}], model="claude-haiku-4-5")
    )
    assert completion.content == "Echo: hi"


def test_openai_key_comes_from_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOMA_OPENAI_API_KEY", "sk-from-env")

    model = create_provider("openai")

    assert isinstance(model, OpenAIModel)
    assert model.base_url == "https://api.openai.com/v1"
    assert model._api_key == "sk-from-env"


def test_openai_without_a_key_names_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="SOMA_OPENAI_API_KEY"):
        create_provider("openai")


def test_openai_compatible_server_needs_no_key() -> None:
    model = create_provider("openai", base_url="http://127.0.0.1:11434/v1")

    assert isinstance(model, OpenAIModel)
    assert model.base_url == "http://127.0.0.1:11434/v1"


def test_anthropic_without_a_key_names_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="SOMA_ANTHROPIC_API_KEY"):
        create_provider("anthropic", base_url="http://127.0.0.1:1")


def test_a_malformed_base_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        create_provider("openai", api_key="sk-x", base_url="localhost:8000/v1")


def test_local_is_imported_lazily_with_path_and_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    class LocalModel(EchoModel):
        provider = "local"

    fake = types.ModuleType("somaagent.llm.providers.local")
    fake.LocalModel = LocalModel  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "somaagent.llm.providers.local", fake)

    model = create_provider("local", model_path="/models/smol.gguf", timeout=12.0)

    assert isinstance(model, LocalModel)
    assert model.settings == {"model_path": "/models/smol.gguf", "timeout": 12.0}


def test_an_unknown_provider_lists_the_known_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    register(monkeypatch, ("echo", f"{__name__}:EchoModel"))

    with pytest.raises(ConfigurationError) as caught:
        create_provider("mistral")

    message = str(caught.value)
    assert "'mistral'" in message
    assert "openai, anthropic, local, echo" in message
    assert ENTRY_POINT_GROUP in message


def test_a_plugin_provider_comes_from_its_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    register(monkeypatch, ("echo", f"{__name__}:EchoModel"))

    model = create_provider("echo", api_key="k", base_url="http://x", timeout=3.0)

    assert isinstance(model, EchoModel)
    assert model.settings == {
        "api_key": "k",
        "base_url": "http://x",
        "timeout": 3.0,
        "model_path": None,
    }


def test_a_plugin_cannot_shadow_a_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    register(monkeypatch, ("openai", f"{__name__}:EchoModel"))

    assert isinstance(create_provider("openai", api_key="sk-x"), OpenAIModel)


def test_a_plugin_that_returns_no_model_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    register(monkeypatch, ("odd", f"{__name__}:not_a_model"))

    with pytest.raises(ConfigurationError, match="not a Model"):
        create_provider("odd")


def test_a_plugin_that_cannot_be_imported_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    register(monkeypatch, ("gone", "somaagent_gone_plugin:Model"))

    with pytest.raises(ConfigurationError, match="somaagent_gone_plugin"):
        create_provider("gone")
