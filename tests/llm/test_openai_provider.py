"""OpenAIModel against the fake OpenAI server: the wire, streaming, and every failure mode."""

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
from somaagent.http import get_session
from somaagent.llm.base import ChatMessage, ChatRequest, StreamChunk
from somaagent.llm.providers.openai import OpenAIModel
from tests.fakes.fixtures import FakeVendor

pytestmark = pytest.mark.anyio

MODEL = "gpt-4o-mini"


def ask(text: str, *, system: str | None = None, **options: object) -> ChatRequest:
    messages: list[ChatMessage] = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": text})
    return ChatRequest(messages=messages, model=MODEL, **options)  # type: ignore[arg-type]


async def collect(model: OpenAIModel, request: ChatRequest) -> list[StreamChunk]:
    chunks: list[StreamChunk] = []
    async with aclosing(model.stream(request)) as stream:
        async for chunk in stream:
            chunks.append(chunk)
    return chunks


async def collect_until_error(
    model: OpenAIModel, request: ChatRequest
) -> tuple[list[str], ProviderError]:
    """The deltas a failing stream yielded before it raised, and what it raised."""
    deltas: list[str] = []
    with pytest.raises(ProviderError) as caught:
        async with aclosing(model.stream(request)) as stream:
            async for chunk in stream:
                assert chunk.finish_reason is None, "a failing stream must not finish"
                deltas.append(chunk.delta)
    return deltas, caught.value


async def test_complete_returns_the_answer_and_usage(openai_model: OpenAIModel) -> None:
    completion = await openai_model.complete(ask("hello there world", system="be brief"))

    assert completion.content == "Echo: hello there world"
    assert completion.finish_reason == "stop"
    assert completion.model == MODEL
    assert completion.provider == "openai"
    assert completion.usage.prompt_tokens == 5  # "be brief" + "hello there world"
    assert completion.usage.completion_tokens == 4
    assert completion.usage.total_tokens == 9


async def test_complete_sends_the_chat_completions_wire(
    openai_model: OpenAIModel, fake_openai: FakeVendor
) -> None:
    await openai_model.complete(
        ask("hi", system="You are terse.", max_tokens=50, temperature=0.2, stop=["END"])
    )

    [sent] = fake_openai.requests
    assert sent.method == "POST"
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {fake_openai.api_key}"
    assert sent.json == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hi"},
        ],
        "stream": False,
        "max_tokens": 50,
        "temperature": 0.2,
        "stop": ["END"],
    }


async def test_max_tokens_ends_with_length(openai_model: OpenAIModel) -> None:
    completion = await openai_model.complete(ask("one two three", max_tokens=2))
    chunks = await collect(openai_model, ask("one two three", max_tokens=2))

    assert (completion.content, completion.finish_reason) == ("Echo: one", "length")
    assert "".join(c.delta for c in chunks) == "Echo: one"
    assert chunks[-1].finish_reason == "length"


async def test_stream_yields_word_deltas_then_finish_and_usage(
    openai_model: OpenAIModel, fake_openai: FakeVendor
) -> None:
    chunks = await collect(openai_model, ask("hello there world", system="be brief"))

    *deltas, last = chunks
    assert [c.delta for c in deltas] == ["Echo:", " hello", " there", " world"]
    assert all(c.finish_reason is None and c.usage is None for c in deltas)
    assert last.delta == ""
    assert last.finish_reason == "stop"
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (5, 4)
    assert last.usage.total_tokens == 9
    [sent] = fake_openai.requests
    assert sent.json["stream"] is True
    assert sent.json["stream_options"] == {"include_usage": True}
    assert sent.headers["accept"] == "text/event-stream"


async def test_wrong_key_is_an_authentication_error(
    fake_openai: FakeVendor, shared_pool: None
) -> None:
    model = OpenAIModel(api_key="sk-wrong", base_url=fake_openai.base_url)

    with pytest.raises(ProviderAuthenticationError) as caught:
        await model.complete(ask("hi"))

    error = caught.value
    assert error.status_code == 401
    assert error.provider == "openai"
    assert "Incorrect API key provided" in error.message
    assert "invalid_api_key" in error.message
    assert error.body["error"]["code"] == "invalid_api_key"
    assert not error.retryable


async def test_no_key_sends_no_authorization_header(
    fake_openai: FakeVendor, shared_pool: None
) -> None:
    fake_openai.clear()
    model = OpenAIModel(base_url=fake_openai.base_url)

    with pytest.raises(ProviderAuthenticationError, match="didn't provide an API key"):
        await model.complete(ask("hi"))
    assert "authorization" not in fake_openai.requests[0].headers


STATUS_ERRORS = [
    (400, ProviderBadRequestError),
    (401, ProviderAuthenticationError),
    (403, ProviderAuthenticationError),
    (404, ProviderBadRequestError),
    (413, ProviderBadRequestError),
    (422, ProviderBadRequestError),
    (429, ProviderRateLimitError),
    (500, ProviderResponseError),
    (502, ProviderOverloadedError),
    (503, ProviderOverloadedError),
    (504, ProviderTimeoutError),
    (529, ProviderOverloadedError),
]


@pytest.mark.parametrize(("status", "expected"), STATUS_ERRORS)
@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
async def test_error_statuses_map_to_provider_errors(
    openai_model: OpenAIModel, status: int, expected: type[ProviderError], streaming: bool
) -> None:
    request = ask(f"fail please [[status:{status}]]")

    with pytest.raises(ProviderError) as caught:
        if streaming:
            await collect(openai_model, request)
        else:
            await openai_model.complete(request)

    error = caught.value
    assert type(error) is expected
    assert error.status_code == status
    assert isinstance(error.body, dict) and error.body["error"]["message"]
    assert error.body["error"]["message"] in error.message  # the vendor's own words
    if status == 429:
        assert error.retry_after == 1.0
        assert error.retryable


@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
async def test_stall_times_out_with_the_request_timeout(
    openai_model: OpenAIModel, streaming: bool
) -> None:
    request = ask("wait [[stall]]", timeout=0.5)
    started = time.monotonic()

    with pytest.raises(ProviderTimeoutError) as caught:
        if streaming:
            await collect(openai_model, request)
        else:
            await openai_model.complete(request)

    assert time.monotonic() - started < 5
    assert caught.value.retryable
    # the per-read timeout, not one for the whole exchange
    assert isinstance(caught.value.__cause__, aiohttp.SocketTimeoutError)


async def test_stall_times_out_with_the_instance_default(
    fake_openai: FakeVendor, shared_pool: None
) -> None:
    model = OpenAIModel(api_key=fake_openai.api_key, base_url=fake_openai.base_url, timeout=0.5)

    with pytest.raises(ProviderTimeoutError, match="timed out"):
        await model.complete(ask("wait [[stall]]"))


async def test_slow_stream_succeeds_because_the_timeout_is_per_read(
    openai_model: OpenAIModel,
) -> None:
    chunks = await collect(openai_model, ask("a b [[slow]]", timeout=1.5))

    assert "".join(c.delta for c in chunks) == "Echo: a b [[slow]]"
    assert chunks[-1].finish_reason == "stop"


async def test_slow_stream_times_out_mid_stream(openai_model: OpenAIModel) -> None:
    deltas, error = await collect_until_error(openai_model, ask("a b [[slow]]", timeout=0.1))

    assert isinstance(error, ProviderTimeoutError)
    assert "".join(deltas) == ""  # the role chunk came at once; the first word was too slow


async def test_cut_stream_raises_after_the_partial_deltas(openai_model: OpenAIModel) -> None:
    deltas, error = await collect_until_error(openai_model, ask("x [[cut]] y z"))

    assert deltas == ["Echo:", " x"]
    assert type(error) is ProviderResponseError
    assert "without" in error.message


async def test_cut_body_is_a_response_error(openai_model: OpenAIModel) -> None:
    with pytest.raises(ProviderResponseError, match="not JSON"):
        await openai_model.complete(ask("x [[cut]]"))


async def test_garbage_body_is_a_response_error(openai_model: OpenAIModel) -> None:
    with pytest.raises(ProviderResponseError, match="not JSON") as caught:
        await openai_model.complete(ask("x [[garbage]]"))
    assert "Bad Gateway" in caught.value.message


async def test_garbage_stream_chunk_is_a_response_error(openai_model: OpenAIModel) -> None:
    deltas, error = await collect_until_error(openai_model, ask("x [[garbage]]"))

    assert deltas == []
    assert type(error) is ProviderResponseError
    assert "not JSON" in error.message


async def test_error_object_in_the_stream_is_a_response_error(
    openai_model: OpenAIModel,
) -> None:
    deltas, error = await collect_until_error(openai_model, ask("x [[stream_error]] y"))

    assert deltas == ["Echo:", " x"]
    assert type(error) is ProviderResponseError
    assert "server had an error" in error.message


@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
async def test_connection_refused_is_a_connection_error(
    closed_port: int, shared_pool: None, streaming: bool
) -> None:
    model = OpenAIModel(api_key="sk-x", base_url=f"http://127.0.0.1:{closed_port}/v1")

    with pytest.raises(ProviderConnectionError) as caught:
        if streaming:
            await collect(model, ask("hi"))
        else:
            await model.complete(ask("hi"))

    assert caught.value.retryable
    assert f"127.0.0.1:{closed_port}" in caught.value.message


async def test_adapters_share_one_pool_per_event_loop(
    fake_openai: FakeVendor, shared_pool: None
) -> None:
    first = OpenAIModel(api_key=fake_openai.api_key, base_url=fake_openai.base_url)
    second = OpenAIModel(api_key=fake_openai.api_key, base_url=fake_openai.base_url)

    await first.complete(ask("a"))
    await second.complete(ask("b"))

    assert first._client is second._client is get_session()


async def test_an_own_http_client_is_used_and_left_open(fake_openai: FakeVendor) -> None:
    fake_openai.clear()
    async with aiohttp.ClientSession(headers={"x-test": "own"}) as client:
        model = OpenAIModel(
            api_key=fake_openai.api_key, base_url=fake_openai.base_url, http_client=client
        )
        await model.complete(ask("a"))
        await model.aclose()
        assert not client.closed
    assert fake_openai.requests[0].headers["x-test"] == "own"


def test_a_base_url_without_scheme_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="absolute http"):
        OpenAIModel(base_url="api.openai.com/v1")


def test_the_official_sdk_accepts_the_fake(fake_openai: FakeVendor) -> None:
    """The fake is only worth testing against if OpenAI's own client reads it unchanged."""
    openai = pytest.importorskip("openai")
    with openai.OpenAI(api_key=fake_openai.api_key, base_url=fake_openai.base_url) as client:
        completion = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi there"}]
        )
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi there"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        with stream:
            chunks = list(stream)
        models = [m.id for m in client.models.list()]
        with pytest.raises(openai.RateLimitError):
            client.with_options(max_retries=0).chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "[[status:429]]"}]
            )

    assert completion.choices[0].message.content == "Echo: hi there"
    assert completion.usage is not None and completion.usage.total_tokens == 5
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Echo: hi there"
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert MODEL in models
