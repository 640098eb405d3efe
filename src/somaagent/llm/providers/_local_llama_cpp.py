"""The local model on ``llama-cpp-python`` (the ``local-compiled`` extra; compiles llama.cpp).

Chosen with ``SOMA_LOCAL_RUNTIME=llama-cpp``. Its build targets the host CPU, so it can
generate faster than the prebuilt ``xllamacpp`` wheel (``bench/results/local_model.md``), at
the price of a compile at install time. Its public API gives what the adapter needs directly:
the tokenizer without the weights (``vocab_only``), the GGUF's own chat template, and a
token-by-token generator that can be stopped between any two tokens.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from somaagent.errors import ConfigurationError, ProviderBadRequestError
from somaagent.llm.base import ChatMessage
from somaagent.llm.providers._local_engine import Generation, Sampling

__all__ = ["LlamaCppEngine"]

PROVIDER = "local"
INSTALL = "pip install 'somaagent[local-compiled]'"


def import_runtime() -> Any:
    """The ``llama_cpp`` module, or a :class:`ConfigurationError` naming the extra."""
    try:
        import llama_cpp
    except ImportError as exc:  # the extra is missing, or its shared library did not load
        raise ConfigurationError(
            f"SOMA_LOCAL_RUNTIME=llama-cpp needs llama-cpp-python: {INSTALL} ({exc})"
        ) from exc
    # Llama(verbose=False) does this too; the vocab loader below would otherwise print
    # llama.cpp's load log to stderr.
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    return llama_cpp


class _Vocab:
    """The model's tokenizer and chat template, read from the GGUF without the weights."""

    def __init__(self, path: Path) -> None:
        lib = import_runtime()
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


class LlamaCppEngine:
    """A GGUF chat model in llama-cpp-python's ``Llama``, driven token by token.

    Args:
        path: the GGUF file.
        n_ctx: context window in tokens.
        n_threads: CPU threads for generation and prompt evaluation.
    """

    def __init__(self, path: Path, *, n_ctx: int, n_threads: int) -> None:
        self.path = path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self._vocab_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._vocab: _Vocab | None = None
        self._llama: Any = None

    @property
    def is_loaded(self) -> bool:
        """Whether the vocabulary is loaded (all that tokenizing and rendering need)."""
        return self._vocab is not None

    def _tokenizer(self) -> _Vocab:
        with self._vocab_lock:
            if self._vocab is None:
                self._vocab = _Vocab(self.path)
            return self._vocab

    def _model(self, last_n: int) -> Any:
        # llama-cpp-python fixes the repetition penalty's window when the model loads.
        with self._load_lock:
            if self._llama is None:
                lib = import_runtime()
                if not self.path.is_file():
                    raise ConfigurationError(f"model file not found: {self.path}")
                try:
                    self._llama = lib.Llama(
                        model_path=str(self.path),
                        n_ctx=self.n_ctx,
                        n_threads=self.n_threads,
                        n_threads_batch=self.n_threads,
                        last_n_tokens_size=last_n,
                        verbose=False,
                    )
                except ValueError as exc:  # llama-cpp-python's "Failed to load model"
                    raise ConfigurationError(
                        f"llama.cpp could not load {self.path}: {exc}"
                    ) from exc
            return self._llama

    def tokenize(self, text: str, *, special: bool) -> list[int]:
        """Token ids of ``text`` (see :class:`Engine`); reads only the vocabulary."""
        return self._tokenizer().tokenize(text, special=special)

    def render(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt text through the GGUF's chat template, assistant turn open."""
        return self._tokenizer().render(messages)

    def generate(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        sampling: Sampling,
        stop: Sequence[str],
        on_text: Callable[[str], None],
        check: Callable[[], None],
    ) -> Generation:
        """Generate token by token (see :class:`Engine`)."""
        check()
        vocab = self._tokenizer()
        llama = self._model(sampling.repeat_last_n)
        prompt = vocab.chat_tokens(messages)
        room = self.n_ctx - len(prompt)
        if room < 1:
            raise ProviderBadRequestError(
                f"the prompt is {len(prompt)} tokens; the context window is {self.n_ctx}",
                provider=PROVIDER,
            )
        budget = min(max_tokens, room)
        # Evaluate the prompt from scratch every time: reusing a cached prefix evaluates its
        # tail in a different batch shape, which can flip a greedy choice.
        llama.reset()
        llama.set_seed(sampling.seed)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = _StopMatcher(stop)
        generated = 0
        finish = "length"
        hit = False
        tokens = llama.generate(
            prompt,
            temp=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            repeat_penalty=sampling.repeat_penalty,
            reset=True,
        )
        try:
            for token in tokens:
                check()
                if vocab.is_end(token):
                    # counted, as llama.cpp's server (the xllamacpp runtime) counts it
                    generated += 1
                    finish = "stop"
                    break
                generated += 1
                text, hit = stops.feed(decoder.decode(vocab.piece(token)))
                if text:
                    on_text(text)
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
                on_text(text)
        return Generation(
            finish_reason=finish, prompt_tokens=len(prompt), completion_tokens=generated
        )

    def close(self) -> None:
        """Free the model and the vocabulary."""
        with self._load_lock, self._vocab_lock:
            if self._llama is not None:
                self._llama.close()
                self._llama = None
            if self._vocab is not None:
                self._vocab.close()
                self._vocab = None
