"""The local model on ``xllamacpp`` (prebuilt wheels: no compiler at install time).

xllamacpp wraps llama.cpp's own server: :class:`xllamacpp.Server` loads the GGUF and runs
the server's scheduling loop on a native thread; ``handle_chat_completions`` takes an
OpenAI-style request, applies the GGUF's chat template, and streams OpenAI chunks to a Python
callback on the calling thread. The callback returning ``True`` drops the response, which
cancels the task inside the server, so a closed stream frees the model within a token.

Tokenising and rendering a chat without generating are not in its Python API; the server's
``/tokenize`` and ``/apply-template`` routes are, on the loopback HTTP listener that
``Server`` always opens. That listener gets an ephemeral port, ``127.0.0.1`` only, no web UI,
and a random API key that only this process knows, so nothing else on the machine can use it.
A call costs under a millisecond there.
"""

from __future__ import annotations

import json
import secrets
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from somaagent.errors import (
    ConfigurationError,
    ProviderBadRequestError,
    ProviderResponseError,
)
from somaagent.llm.base import ChatMessage
from somaagent.llm.providers._local_engine import Generation, Sampling

__all__ = ["XllamacppEngine"]

PROVIDER = "local"
INSTALL = "pip install 'somaagent[local]'"
_HTTP_TIMEOUT = 30.0


def import_runtime() -> Any:
    """The ``xllamacpp`` module, or a :class:`ConfigurationError` naming the extra."""
    try:
        import xllamacpp
    except ImportError as exc:  # the extra is missing, or its shared library did not load
        raise ConfigurationError(f"the local model needs xllamacpp: {INSTALL} ({exc})") from exc
    return xllamacpp


class XllamacppEngine:
    """A GGUF chat model in an in-process llama.cpp server (see the module docstring).

    Args:
        path: the GGUF file.
        n_ctx: context window in tokens.
        n_threads: CPU threads for generation and prompt evaluation.
    """

    def __init__(self, path: Path, *, n_ctx: int, n_threads: int) -> None:
        self.path = path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self._key = secrets.token_urlsafe(24)
        self._lock = threading.Lock()
        self._server: Any = None
        self._address = ""

    # -- loading ---------------------------------------------------------------------------

    @property
    def is_loaded(self) -> bool:
        """Whether the server (and so the model) is up."""
        return self._server is not None

    def _loaded(self) -> tuple[Any, str]:
        with self._lock:
            if self._server is None:
                self._server = self._load()
                self._address = str(self._server.listening_address)
            return self._server, self._address

    def _load(self) -> Any:
        lib = import_runtime()
        if not self.path.is_file():
            raise ConfigurationError(f"model file not found: {self.path}")
        params = lib.CommonParams()
        params.model.path = str(self.path)
        params.n_ctx = self.n_ctx
        params.n_parallel = 1  # one slot: the whole context for one answer at a time
        params.cpuparams.n_threads = self.n_threads
        params.cpuparams_batch.n_threads = self.n_threads
        # Evaluate every prompt from scratch: reusing a cached prefix evaluates its tail in a
        # different batch shape, which can flip a greedy choice (answers must not depend on
        # what was asked before).
        params.cache_prompt = False
        params.verbosity = -1  # llama.cpp's server logs each request to stderr otherwise
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.api_keys = [self._key]
        params.ui = False
        params.n_threads_http = 2
        try:
            return lib.Server(params)
        except (RuntimeError, ValueError) as exc:  # "Failed to init server, ..."
            raise ConfigurationError(f"llama.cpp could not load {self.path}: {exc}") from exc

    def close(self) -> None:
        """Stop the server (its destructor joins the native loop) and free the model."""
        with self._lock:
            server, self._server = self._server, None
        del server

    # -- tokens ----------------------------------------------------------------------------

    def _post(self, route: str, body: dict[str, Any]) -> Any:
        _, address = self._loaded()
        request = urllib.request.Request(
            address + route,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._key}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT) as response:
                return json.load(response)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ProviderResponseError(
                f"the local model's {route} failed: {exc}", provider=PROVIDER
            ) from exc

    def tokenize(self, text: str, *, special: bool) -> list[int]:
        """Token ids of ``text`` by the model's own tokenizer (see :class:`Engine`)."""
        out = self._post(
            "/tokenize", {"content": text, "add_special": special, "parse_special": special}
        )
        return [int(t) for t in out["tokens"]]

    def render(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt exactly as generation builds it (the server's own template path)."""
        payload = [{"role": m["role"], "content": m["content"]} for m in messages]
        return str(self._post("/apply-template", {"messages": payload})["prompt"])

    # -- generation ------------------------------------------------------------------------

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
        """Stream one answer through the server (see :class:`Engine`)."""
        server, _ = self._loaded()
        body: dict[str, Any] = {
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "max_tokens": max_tokens,
            "temperature": sampling.temperature,
            "top_k": sampling.top_k,
            "top_p": sampling.top_p,
            "min_p": sampling.min_p,
            "repeat_penalty": sampling.repeat_penalty,
            "repeat_last_n": sampling.repeat_last_n,
            "seed": sampling.seed,
            "stop": list(stop),
            "stream": True,
            "stream_options": {"include_usage": True},
            "cache_prompt": False,
        }
        failure: list[BaseException] = []
        finish: list[str] = []
        usage: dict[str, Any] = {}

        def on_chunk(chunk: Any) -> bool:
            # Runs on this thread, called from native code: an exception must not escape it,
            # so it is kept and re-raised once the server has let go of the response.
            try:
                if not isinstance(chunk, dict):
                    chunk = json.loads(chunk)
                if "error" in chunk:
                    failure.append(_error(chunk["error"], self.n_ctx))
                    return True
                check()
                for choice in chunk.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        on_text(text)
                    if choice.get("finish_reason"):
                        finish.append(str(choice["finish_reason"]))
                if chunk.get("usage"):
                    usage.update(chunk["usage"])
                return False
            except BaseException as exc:
                failure.append(exc)
                return True  # dropping the response cancels the task in the server

        check()
        server.handle_chat_completions(body, on_chunk)
        if failure:
            raise failure[0]
        if not finish or not usage:
            raise ProviderResponseError(
                "the local model's stream ended without a finish reason or usage",
                provider=PROVIDER,
            )
        return Generation(
            finish_reason="length" if finish[-1] == "length" else "stop",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        )


def _error(error: Any, n_ctx: int) -> Exception:
    """The SomaAgent error for an error object from llama.cpp's server."""
    if not isinstance(error, dict):
        return ProviderResponseError(f"llama.cpp failed: {error}", provider=PROVIDER)
    message = str(error.get("message", error))
    if error.get("type") == "exceed_context_size_error":
        prompt = error.get("n_prompt_tokens", "?")
        return ProviderBadRequestError(
            f"the prompt is {prompt} tokens; the context window is {n_ctx}", provider=PROVIDER
        )
    if error.get("code") == 400:
        return ProviderBadRequestError(message, provider=PROVIDER)
    return ProviderResponseError(f"llama.cpp failed: {message}", provider=PROVIDER)
