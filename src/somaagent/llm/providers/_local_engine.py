"""What the local model's runtimes share: sampling settings and the engine contract.

:class:`~somaagent.llm.providers.local.LocalModel` owns the asynchronous side (a worker
thread, a bounded queue, cancellation and deadlines); an *engine* owns one llama.cpp binding
and runs one generation at a time on the calling (worker) thread. Two engines exist:
``xllamacpp`` (prebuilt wheels, the default) and ``llama-cpp`` (llama-cpp-python, compiled at
install time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from somaagent.llm.base import ChatMessage

__all__ = ["Cancelled", "Engine", "Generation", "Sampling"]


class Cancelled(Exception):
    """The consumer went away; the worker stops quietly."""


@dataclass(frozen=True, slots=True)
class Sampling:
    """How the next token is picked.

    ``temperature`` 0 is greedy. ``repeat_penalty`` > 1 divides the logits of tokens seen in
    the last ``repeat_last_n`` tokens, which is what stops a small model from repeating one
    phrase to the token limit (``bench/local_model_endings.py`` measures the effect).
    """

    temperature: float
    top_k: int
    top_p: float
    min_p: float
    repeat_penalty: float
    repeat_last_n: int
    seed: int


@dataclass(frozen=True, slots=True)
class Generation:
    """How one generation ended: ``stop`` (end of turn or a stop string) or ``length``."""

    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class Engine(Protocol):
    """One loaded (or loadable) GGUF chat model behind a llama.cpp binding.

    Every method may load the model on first use and raises
    :class:`~somaagent.errors.ConfigurationError` when the runtime or the file is unusable.
    Calls come from one thread at a time for generation; ``tokenize``/``render`` may come
    from any thread.
    """

    @property
    def is_loaded(self) -> bool:
        """Whether the model is in memory now (so a call would not load it first)."""
        ...

    def tokenize(self, text: str, *, special: bool) -> list[int]:
        """Token ids of ``text``; ``special`` parses control tokens (``<|im_start|>``) and
        adds BOS if the model wants one, as for a rendered prompt."""
        ...

    def render(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt text: ``messages`` through the GGUF's chat template, assistant turn open."""
        ...

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
        """Generate an answer, handing text to ``on_text`` as it comes and calling ``check``
        between tokens (it raises to stop: :class:`Cancelled` or a timeout).

        Raises:
            ProviderBadRequestError: the prompt does not fit the context window.
            ProviderResponseError: llama.cpp failed while generating.
        """
        ...

    def close(self) -> None:
        """Free the native model (the engine may load it again later)."""
        ...
