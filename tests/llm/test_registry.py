"""The model registry: the packaged file, user files merged on top, lookups and reloads."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from somaagent.errors import ConfigurationError
from somaagent.llm.registry import (
    CAPABILITIES,
    KNOWN_PROVIDERS,
    ModelRegistry,
    ModelSpec,
    UnknownModelError,
)
from somaagent.types import ModelInfo

# The families the design names, plus the embedded model; the router's default fallback chain
# (claude-3-sonnet -> gpt-3.5-turbo -> llama-3-8b) refers to them by these names.
REQUIRED = [
    "claude-3-haiku",
    "claude-3-sonnet",
    "claude-3-opus",
    "claude-3-5-sonnet",
    "claude-3-5-haiku",
    "claude-sonnet-4-5",
    "gpt-4",
    "gpt-4-turbo",
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-3.5-turbo",
    "gpt-4.1",
    "gpt-5",
    "llama-3-8b",
    "llama-3-70b",
    "llama-3.1-8b",
    "llama-3.1-70b",
    "phi-3-mini",
    "phi-3-medium",
    "smollm2-135m-local",
]

NEW_MODEL = textwrap.dedent(
    """
    provider: openai_compatible
    provider_model_id: acme/tiny-7b
    base_url: http://127.0.0.1:8000/v1
    input_cost_per_mtok: 0.2
    output_cost_per_mtok: 0.4
    context_window: 32768
    max_output_tokens: 4096
    capabilities: [streaming, tools]
    quality: {overall: 0.6, coding: 0.5}
    latency: {ttft_ms: 200, tokens_per_s: 90}
"""
)


def write_models(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def entry(name: str, fields: str = NEW_MODEL) -> str:
    """A ``models:`` document with one entry."""
    return f"models:\n  {name}:\n" + textwrap.indent(textwrap.dedent(fields).strip(), "    ")


def bump_mtime(path: Path) -> None:
    """Move the file's mtime forward, whatever the file system's timestamp granularity."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry.load()


# -- the packaged file -----------------------------------------------------------------------


def test_packaged_file_loads_with_the_required_models(registry: ModelRegistry) -> None:
    assert set(REQUIRED) <= set(registry.names())
    assert len(registry) == len(registry.names()) == len(registry.all())


def test_every_model_has_a_price_and_only_local_ones_are_free(registry: ModelRegistry) -> None:
    for spec in registry.all():
        if spec.provider == "local":
            assert spec.input_cost_per_mtok == spec.output_cost_per_mtok == 0
        else:
            assert spec.input_cost_per_mtok > 0, spec.name
            assert spec.output_cost_per_mtok > 0, spec.name
            if spec.cached_input_cost_per_mtok is not None:
                assert 0 < spec.cached_input_cost_per_mtok <= spec.input_cost_per_mtok


def test_packaged_models_are_well_formed(registry: ModelRegistry) -> None:
    for spec in registry.all():
        assert spec.provider in KNOWN_PROVIDERS
        assert spec.capabilities <= CAPABILITIES
        assert 0 < spec.max_output_tokens <= spec.context_window
        assert 0 <= spec.quality.for_task(None) <= 1
        assert spec.latency.ttft_ms > 0 and spec.latency.tokens_per_s > 0
    assert registry.get("smollm2-135m-local").provider == "local"
    assert registry.get("llama-3-8b").provider == "openai_compatible"


def test_known_prices(registry: ModelRegistry) -> None:
    sonnet = registry.get("claude-3-sonnet")
    assert (sonnet.input_cost_per_mtok, sonnet.output_cost_per_mtok) == (3.0, 15.0)
    gpt35 = registry.get("gpt-3.5-turbo")
    assert (gpt35.input_cost_per_mtok, gpt35.output_cost_per_mtok) == (0.5, 1.5)
    assert registry.get("gpt-4o").cached_input_cost_per_mtok == 1.25


def test_quality_falls_back_to_overall(registry: ModelRegistry) -> None:
    spec = registry.get("gpt-4o")
    assert spec.quality_for("coding") == spec.quality.coding
    assert spec.quality_for("extraction") == spec.quality.overall
    assert spec.quality_for(None) == spec.quality.overall
    assert spec.latency.expected_ms(0) == spec.latency.ttft_ms
    assert spec.supports("tools", "streaming")
    assert not registry.get("gpt-3.5-turbo").supports("vision")


def test_to_info_is_the_models_endpoint_shape(registry: ModelRegistry) -> None:
    info = registry.get("gpt-4o-mini").to_info()
    assert isinstance(info, ModelInfo)
    assert info.id == "gpt-4o-mini"
    assert info.provider_model_id == "gpt-4o-mini-2024-07-18"
    assert (info.input_cost_per_mtok, info.output_cost_per_mtok) == (0.15, 0.6)


# -- lookups ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        ("gpt-3.5-turbo", "gpt-3.5-turbo"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),  # the provider id
        ("claude-3-sonnet-20240229", "claude-3-sonnet"),  # the provider id
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),  # an alias
        ("claude-3-5-sonnet-20240620", "claude-3-5-sonnet"),  # an older snapshot, same price
        ("meta-llama/Meta-Llama-3-8B-Instruct", "llama-3-8b"),  # vLLM's default name
        ("GPT-4o", "gpt-4o"),  # case-insensitive
        (" gpt-4o ", "gpt-4o"),
    ],
)
def test_names_aliases_and_provider_ids_resolve(
    registry: ModelRegistry, asked: str, expected: str
) -> None:
    assert registry.get(asked).name == expected
    assert asked in registry


def test_unknown_model_error_names_close_matches(registry: ModelRegistry) -> None:
    with pytest.raises(UnknownModelError) as caught:
        registry.get("claude-3-sonet")
    assert isinstance(caught.value, KeyError)
    assert caught.value.name == "claude-3-sonet"
    assert caught.value.suggestions[0] == "claude-3-sonnet"
    message = str(caught.value)
    assert message.startswith("unknown model 'claude-3-sonet'; did you mean 'claude-3-sonnet'")
    with pytest.raises(UnknownModelError, match="'gpt-4o'"):
        registry.get("gpt4o")


def test_unknown_model_without_close_matches(registry: ModelRegistry) -> None:
    with pytest.raises(UnknownModelError, match="GET /v1/models") as caught:
        registry.get("zzzzzz")
    assert caught.value.suggestions == []
    assert registry.find("zzzzzz") is None
    assert "zzzzzz" not in registry


def test_auto_is_not_a_model(registry: ModelRegistry) -> None:
    assert registry.find("auto") is None


# -- load errors -----------------------------------------------------------------------------


def test_a_model_with_no_price_fails_to_load_naming_it(tmp_path: Path) -> None:
    body = entry("acme-tiny", NEW_MODEL.replace("output_cost_per_mtok: 0.4\n", ""))
    path = write_models(tmp_path / "models.yaml", body)
    with pytest.raises(ConfigurationError) as caught:
        ModelRegistry.load(path)
    message = str(caught.value)
    assert "'acme-tiny'" in message
    assert "output_cost_per_mtok" in message
    assert "never $0" in message
    assert str(path) in message


def test_a_zero_price_is_refused_except_for_local_models(tmp_path: Path) -> None:
    path = write_models(tmp_path / "m.yaml", entry("acme-tiny").replace("0.2", "0"))
    with pytest.raises(ConfigurationError, match=r"'acme-tiny'.*only for provider 'local'"):
        ModelRegistry.load(path)
    local = (
        entry("my-local")
        .replace("openai_compatible", "local")
        .replace("0.2", "0")
        .replace("0.4", "0")
    )
    registry = ModelRegistry.load(write_models(tmp_path / "local.yaml", local))
    assert registry.get("my-local").input_cost_per_mtok == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("context_window: 32768", "context_window: 0"), "context_window"),
        (("context_window: 32768", "context_window: 1024"), "max_output_tokens"),
        (("[streaming, tools]", "[streaming, telepathy]"), "capabilities"),
        (("input_cost_per_mtok: 0.2", "input_cost_per_mtok: -1"), "input_cost_per_mtok"),
        (("input_cost_per_mtok: 0.2", "input_cost_per_mtok: '0.2'"), "input_cost_per_mtok"),
        (("overall: 0.6", "overall: 60"), "quality.overall"),
        (("ttft_ms: 200", "ttft_ms: 0"), "latency.ttft_ms"),
        (("base_url:", "base_ulr:"), "base_ulr"),
    ],
)
def test_invalid_fields_name_the_model_and_field(
    tmp_path: Path, change: tuple[str, str], field: str
) -> None:
    body = entry("acme-tiny").replace(*change)
    path = write_models(tmp_path / "m.yaml", body)
    with pytest.raises(ConfigurationError) as caught:
        ModelRegistry.load(path)
    assert "'acme-tiny'" in str(caught.value)
    assert field in str(caught.value)


def test_duplicate_keys_and_alias_clashes_are_errors(tmp_path: Path) -> None:
    twice = entry("acme-tiny") + "\n" + entry("acme-tiny").removeprefix("models:\n")
    with pytest.raises(ConfigurationError, match="duplicate key 'acme-tiny'"):
        ModelRegistry.load(write_models(tmp_path / "twice.yaml", twice))
    clash = entry("acme-tiny", NEW_MODEL + "aliases: [gpt-3.5-turbo-0125-ft, gpt-4o]\n")
    with pytest.raises(ConfigurationError, match="'gpt-4o' names both"):
        ModelRegistry.load(write_models(tmp_path / "clash.yaml", clash))


def test_structural_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        ModelRegistry.load(tmp_path / "missing.yaml")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        ModelRegistry.load(write_models(tmp_path / "bad.yaml", "models: [\n"))
    with pytest.raises(ConfigurationError, match="unknown top-level key"):
        ModelRegistry.load(write_models(tmp_path / "top.yaml", "modles: {}\n"))
    with pytest.raises(ConfigurationError, match="'gpt-4o': expected a mapping"):
        ModelRegistry.load(write_models(tmp_path / "shape.yaml", "models:\n  gpt-4o: 3\n"))


def test_an_empty_user_file_changes_nothing(tmp_path: Path, registry: ModelRegistry) -> None:
    loaded = ModelRegistry.load(write_models(tmp_path / "empty.yaml", "# nothing yet\n"))
    assert loaded.names() == registry.names()


# -- user files ------------------------------------------------------------------------------


def test_user_file_overrides_a_price_and_keeps_the_rest(tmp_path: Path) -> None:
    body = """
        models:
          gpt-4o:
            input_cost_per_mtok: 2.0
            quality: {coding: 0.5}
    """
    registry = ModelRegistry.load(write_models(tmp_path / "m.yaml", body))
    spec = registry.get("gpt-4o")
    assert spec.input_cost_per_mtok == 2.0
    assert spec.output_cost_per_mtok == 10.0  # inherited
    assert spec.quality.coding == 0.5
    assert spec.quality.overall == ModelRegistry.load().get("gpt-4o").quality.overall
    assert registry.get("gpt-4o-2024-08-06") is spec  # aliases still resolve


def test_an_override_must_stay_consistent(tmp_path: Path) -> None:
    # gpt-4o's packaged cached-input price is 1.25: an input price below it is a mistake.
    body = "models:\n  gpt-4o:\n    input_cost_per_mtok: 1.0\n"
    with pytest.raises(ConfigurationError, match=r"'gpt-4o'.*cached_input_cost_per_mtok is above"):
        ModelRegistry.load(write_models(tmp_path / "m.yaml", body))


def test_user_file_adds_a_model(tmp_path: Path) -> None:
    registry = ModelRegistry.load(write_models(tmp_path / "m.yaml", entry("acme-tiny")))
    spec = registry.get("acme-tiny")
    assert spec.base_url == "http://127.0.0.1:8000/v1"
    assert registry.get("acme/tiny-7b") is spec
    assert registry.names()[-1] == "acme-tiny"
    assert "gpt-4o" in registry


def test_user_file_disables_a_model(tmp_path: Path) -> None:
    body = "models:\n  claude-3-opus:\n    enabled: false\n"
    registry = ModelRegistry.load(write_models(tmp_path / "m.yaml", body))
    assert "claude-3-opus" not in registry.names()
    assert registry.find("claude-3-opus") is None
    assert registry.find("claude-3-opus-20240229") is None
    with pytest.raises(UnknownModelError, match="'claude-3-opus' is disabled"):
        registry.get("claude-3-opus-latest")
    assert registry.suggest("claude-3-opus") != ["claude-3-opus"]


def test_disabling_a_model_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    body = "models:\n  claude-3-opuss:\n    enabled: false\n"
    with pytest.raises(ConfigurationError, match=r"no such model.*'claude-3-opus'"):
        ModelRegistry.load(write_models(tmp_path / "m.yaml", body))


def test_replace_takes_the_user_entry_whole(tmp_path: Path) -> None:
    partial = "models:\n  gpt-4o:\n    replace: true\n    input_cost_per_mtok: 2.0\n"
    with pytest.raises(ConfigurationError, match=r"'gpt-4o'.*output_cost_per_mtok"):
        ModelRegistry.load(write_models(tmp_path / "partial.yaml", partial))
    whole = entry("gpt-4o", "replace: true\n" + NEW_MODEL)
    registry = ModelRegistry.load(write_models(tmp_path / "whole.yaml", whole))
    spec = registry.get("gpt-4o")
    assert spec.provider_model_id == "acme/tiny-7b"
    assert spec.aliases == ()  # nothing inherited
    assert registry.find("gpt-4o-2024-11-20") is None


def test_specs_are_frozen_and_forbid_extra_fields(registry: ModelRegistry) -> None:
    spec = registry.get("gpt-4o")
    with pytest.raises(Exception, match="frozen"):
        spec.input_cost_per_mtok = 0.0  # type: ignore[misc]
    data = spec.model_dump()
    data["surprise"] = 1
    with pytest.raises(Exception, match="surprise"):
        ModelSpec.model_validate(data)


# -- reloading -------------------------------------------------------------------------------


def test_reload_after_the_user_file_changes(tmp_path: Path) -> None:
    path = write_models(tmp_path / "m.yaml", "models:\n  gpt-4o:\n    input_cost_per_mtok: 2.0\n")
    registry = ModelRegistry.load(path, check_interval=0)
    assert registry.reload_if_changed() is False  # unchanged
    acme = entry("acme-tiny").removeprefix("models:\n")
    write_models(path, "models:\n  gpt-4o:\n    input_cost_per_mtok: 1.5\n" + acme)
    bump_mtime(path)
    assert registry.reload_if_changed() is True
    assert registry.get("gpt-4o").input_cost_per_mtok == 1.5
    assert registry.get("acme-tiny").provider == "openai_compatible"
    assert registry.reload_if_changed() is False


def test_a_broken_edit_keeps_the_last_good_models(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_models(tmp_path / "m.yaml", "models:\n  gpt-4o:\n    input_cost_per_mtok: 2.0\n")
    registry = ModelRegistry.load(path, check_interval=0)
    write_models(path, "models:\n  gpt-4o:\n    input_cost_per_mtok: free\n")
    bump_mtime(path)
    assert registry.reload_if_changed() is False
    assert registry.get("gpt-4o").input_cost_per_mtok == 2.0
    assert registry.last_error is not None
    assert "input_cost_per_mtok" in str(registry.last_error)
    assert "not reloaded" in caplog.text
    write_models(path, "models:\n  gpt-4o:\n    input_cost_per_mtok: 1.5\n")
    bump_mtime(path)
    assert registry.reload_if_changed() is True
    assert registry.get("gpt-4o").input_cost_per_mtok == 1.5
    assert registry.last_error is None


def test_reload_looks_at_the_file_at_most_once_per_interval(tmp_path: Path) -> None:
    path = write_models(tmp_path / "m.yaml", "models:\n  gpt-4o:\n    input_cost_per_mtok: 2.0\n")
    registry = ModelRegistry.load(path)  # the default interval: 1 second
    write_models(path, "models:\n  gpt-4o:\n    input_cost_per_mtok: 1.5\n")
    bump_mtime(path)
    assert registry.reload_if_changed() is False  # loaded less than a second ago
    assert registry.get("gpt-4o").input_cost_per_mtok == 2.0
    registry._last_check -= 1.0  # as if a second had passed
    assert registry.reload_if_changed() is True
    assert registry.get("gpt-4o").input_cost_per_mtok == 1.5


def test_reload_without_a_user_file_is_a_no_op(registry: ModelRegistry) -> None:
    assert registry.user_file is None
    assert registry.reload_if_changed() is False


def test_a_registry_from_specs(registry: ModelRegistry) -> None:
    small = ModelRegistry([registry.get("gpt-4o"), registry.get("llama-3-8b")])
    assert small.names() == ["gpt-4o", "llama-3-8b"]
    with pytest.raises(UnknownModelError, match="did you mean 'gpt-4o'"):
        small.get("gpt-4")
