"""AnthropicModel against the fake Anthropic server: the wire, streaming, and every failure mode."""

from __future__ import annotations

import time
from contextlib import aclosing

import aiohttp
import pytest

from somaagent.errors import (
    ConfigurationError,
    ProviderAuthenticationError,
    ProviderBadRequestError,
    ProviderConnectionError,
    ProviderError,
    ProviderOverloadedError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderTimeoutError,
)
from somaagent.llm.base import ChatMessage, ChatRequest, StreamChunk
from somaagent.llm.providers.anthropic import API_VERSION, DEFAULT_MAX_TOKENS, AnthropicModel
from tests.fakes.fixtures import FakeVendor

pytestmark = pytest.mark.anyio

MODEL = "claude-haiku-4-5"


def ask(text: str, *, system: str | None = None, **options: object) -> ChatRequest:
    messages: list[ChatMessage] = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": text})
    return ChatRequest(messages=messages, model=MODEL, **options)  # type: ignore[arg-type]


async def collect(model: AnthropicModel, request: ChatRequest) -> list[StreamChunk]:
    chunks: list[StreamChunk] = []
    async with aclosing(model.stream(request)) as stream:
        async for chunk in stream:
            chunks.append(chunk)
    return chunks


async def collect_until_error(
    model: AnthropicModel, request: ChatRequest
) -> tuple[list[str], ProviderError]:
    """The deltas a failing stream yielded before it raised, and what it raised."""
    deltas: list[str] = []
    with pytest.raises(ProviderError) as caught:
        async with aclosing(model.stream(request)) as stream:
            async for chunk in stream:
                assert chunk.finish_reason is None, "a failing stream must not finish"
                deltas.append(chunk.delta)
    return deltas, caught.value


async def test_complete_returns_the_answer_and_usage(anthropic_model: AnthropicModel) -> None:
    completion = await anthropic_model.complete(ask("hello there world", system="be brief"))

    assert completion.content == "Echo: hello there world"
    assert completion.finish_reason == "stop"  # end_turn
    assert completion.model == MODEL
    assert completion.provider == "anthropic"
    assert completion.usage.prompt_tokens == 5  # system "be brief" + "hello there world"
    assert completion.usage.completion_tokens == 4
    assert completion.usage.total_tokens == 9


async def test_complete_sends_the_messages_wire(
    anthropic_model: AnthropicModel, fake_anthropic: FakeVendor
) -> None:
    request = ChatRequest(
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "system", "content": "Answer in English."},
            {"role": "user", "content": "again"},
        ],
        model=MODEL,
        temperature=0.3,
        stop=["END"],
    )

    completion = await anthropic_model.complete(request)

    assert completion.content == "Echo: again"
    [sent] = fake_anthropic.requests
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent.headers["x-api-key"] == fake_anthropic.api_key
    assert sent.headers["anthropic-version"] == API_VERSION
    assert "authorization" not in sent.headers
    assert sent.json == {
        "model": MODEL,
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "again"},
        ],
        "system": "You are terse.\n\nAnswer in English.",
        "stream": False,
        "temperature": 0.3,
        "stop_sequences": ["END"],
    }


async def test_no_system_field_without_system_messages(
    anthropic_model: AnthropicModel, fake_anthropic: FakeVendor
) -> None:
    await anthropic_model.complete(ask("hi"))

    assert "system" not in fake_anthropic.requests[0].json


async def test_temperature_is_clamped_to_anthropics_range(
    anthropic_model: AnthropicModel, fake_anthropic: FakeVendor
) -> None:
    await anthropic_model.complete(ask("hi", temperature=1.6))

    assert fake_anthropic.requests[0].json["temperature"] == 1.0


@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
async def test_stop_reasons_map_to_finish_reasons(
    anthropic_model: AnthropicModel, streaming: bool
) -> None:
    cases = [
        (ask("one two three", max_tokens=2), "Echo: one", "length"),  # max_tokens
        (ask("one two three", stop=[" two"]), "Echo: one", "stop"),  # stop_sequence
    ]
    for request, text, finish in cases:
        if streaming:
            chunks = await collect(anthropic_model, request)
            assert ("".join(c.delta for c in chunks), chunks[-1].finish_reason) == (text, finish)
        else:
            completion = await anthropic_model.complete(request)
            assert (completion.content, completion.finish_reason) == (text, finish)


async def test_stream_yields_text_deltas_then_finish_and_usage(
    anthropic_model: AnthropicModel, fake_anthropic: FakeVendor
) -> None:
    chunks = await collect(anthropic_model, ask("hello there world", system="be brief"))

    *deltas, last = chunks
    assert [c.delta for c in deltas] == ["Echo:", " hello", " there", " world"]
    assert all(c.finish_reason is None and c.usage is None for c in deltas)
    assert (last.delta, last.finish_reason) == ("", "stop")
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (5, 4)
    assert last.usage.total_tokens == 9
    [sent] = fake_anthropic.requests
    assert sent.json["stream"] is True
    assert sent.json["system"] == "be brief"


async def test_wrong_key_is_an_authentication_error(
    fake_anthropic: FakeVendor, shared_pool: None
) -> None:
    model = AnthropicModel(api_key="sk-ant-wrong", base_url=fake_anthropic.base_url)

    with pytest.raises(ProviderAuthenticationError) as caught:
        await model.complete(ask("hi"))

    error = caught.value
    assert error.status_code == 401
    assert error.provider == "anthropic"
    assert "invalid x-api-key" in error.message
    assert "authentication_error" in error.message
    assert error.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }


def test_a_missing_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="SOMA_ANTHROPIC_API_KEY"):
        AnthropicModel(api_key=None)


STATUS_ERRORS = [
    (400, ProviderBadRequestError, "invalid_request_error"),
    (401, ProviderAuthenticationError, "authentication_error"),
    (403, ProviderAuthenticationError, "permission_error"),
    (404, ProviderBadRequestError, "not_found_error"),
    (413, ProviderBadRequestError, "request_too_large"),
    (429, ProviderRateLimitError, "rate_limit_error"),
    (500, ProviderResponseError, "api_error"),
    (529, ProviderOverloadedError, "overloaded_error"),
]


@pytest.mark.parametrize(("status", "expected", "kind"), STATUS_ERRORS)
@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
async def test_error_statuses_map_to_provider_errors(
    anthropic_model: AnthropicModel,
    status: int,
    expected: type[ProviderError],
    kind: str,
    streaming: bool,
) -> None:
    request = ask(f"fail please [[status:{status}]]")

    with pytest.raises(ProviderError) as caught:
        if streaming:
            await collect(anthropic_model, request)
        else:
            await anthropic_model.complete(request)

    error = caught.value
    assert type(error) is expected
    assert error.status_code == status
    assert error.body["error"]["type"] == kind
    assert error.body["error"]["message"] in error.message
    assert kind in error.message
    if status == 429:
        assert error.retry_after == 1.0
    if status in (429, 529):
        assert error.retryable


@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
async def test_stall_times_out(anthropic_model: AnthropicModel, streaming: bool) -> None:
    request = ask("wait [[stall]]", timeout=0.5)
    started = time.monotonic()

    with pytest.raises(ProviderTimeoutError) as caught:
        if streaming:
            await collect(anthropic_model, request)
        else:
            await anthropic_model.complete(request)

    assert time.monotonic() - started < 5
    # the per-read timeout, not one for the whole exchange
    assert isinstance(caught.value.__cause__, aiohttp.SocketTimeoutError)


async def test_slow_stream_succeeds(anthropic_model: AnthropicModel) -> None:
    chunks = await collect(anthropic_model, ask("a [[slow]]", timeout=1.5))

    assert "".join(c.delta for c in chunks) == "Echo: a [[slow]]"
    assert chunks[-1].finish_reason == "stop"


async def test_stream_without_message_stop_raises_after_the_partial_deltas(
    anthropic_model: AnthropicModel,
) -> None:
    deltas, error = await collect_until_error(anthropic_model, ask("x [[cut]] y z"))

    assert deltas == ["Echo:", " x"]
    assert type(error) is ProviderResponseError
    assert "message_stop" in error.message


async def test_error_event_in_the_stream_is_mapped_by_its_type(
    anthropic_model: AnthropicModel,
) -> None:
    deltas, error = await collect_until_error(anthropic_model, ask("x [[stream_error]] y"))

    assert deltas == ["Echo:", " x"]
    assert type(error) is ProviderOverloadedError
    assert error.retryable
    assert "Overloaded" in error.message


async def test_cut_body_is_a_response_error(anthropic_model: AnthropicModel) -> None:
    with pytest.raises(ProviderResponseError, match="not JSON"):
        await anthropic_model.complete(ask("x [[cut]]"))


async def test_garbage_body_is_a_response_error(anthropic_model: AnthropicModel) -> None:
    with pytest.raises(ProviderResponseError, match="upstream connect error"):
        await anthropic_model.complete(ask("x [[garbage]]"))


async def test_garbage_stream_event_is_a_response_error(
    anthropic_model: AnthropicModel,
) -> None:
    deltas, error = await collect_until_error(anthropic_model, ask("x [[garbage]]"))

    assert deltas == []
    assert type(error) is ProviderResponseError
    assert "not JSON" in error.message


@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
async def test_connection_refused_is_a_connection_error(
    closed_port: int, shared_pool: None, streaming: bool
) -> None:
    model = AnthropicModel(api_key="sk-ant-x", base_url=f"http://127.0.0.1:{closed_port}")

    with pytest.raises(ProviderConnectionError) as caught:
        if streaming:
            await collect(model, ask("hi"))
        else:
            await model.complete(ask("hi"))

    assert caught.value.retryable


async def test_an_own_http_client_is_used_and_left_open(fake_anthropic: FakeVendor) -> None:
    fake_anthropic.clear()
    async with aiohttp.ClientSession(headers={"x-test": "own"}) as client:
        model = AnthropicModel(
            api_key=fake_anthropic.api_key, base_url=fake_anthropic.base_url, http_client=client
        )
        chunks = await collect(model, ask("a"))
        await model.aclose()
        assert not client.closed
    assert "".join(c.delta for c in chunks) == "Echo: a"
    assert fake_anthropic.requests[0].headers["x-test"] == "own"


def test_the_official_sdk_accepts_the_fake(fake_anthropic: FakeVendor) -> None:
    """The fake is only worth testing against if Anthropic's own client reads it unchanged."""
    anthropic = pytest.importorskip("anthropic")
    with anthropic.Anthropic(
        api_key=fake_anthropic.api_key, base_url=fake_anthropic.base_url, max_retries=0
    ) as client:
        message = client.messages.create(
            model=MODEL,
            max_tokens=100,
            system="be brief",
            messages=[{"role": "user", "content": "hi there"}],
        )
        with client.messages.stream(
            model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "hi there"}]
        ) as stream:
            streamed = "".join(stream.text_stream)
            final = stream.get_final_message()
        with pytest.raises(anthropic.InternalServerError) as caught:
            client.messages.create(
                model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "[[status:529]]"}]
            )

    assert message.content[0].text == "Echo: hi there"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (4, 3)
    assert message.stop_reason == "end_turn"
    assert streamed == "Echo: hi there"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3
    assert caught.value.status_code == 529
