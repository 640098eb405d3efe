"""Models files: parsing a YAML models file and merging a user's file onto the packaged one.

The packaged ``models.yaml`` (next to this module) describes the models; a user's models file
is merged on top of it. Merging, per entry of the user file (keyed by registry name):

* a new name adds a model; the entry must be complete;
* an existing name is merged field by field onto the packaged entry (nested mappings such as
  ``quality`` one level deep), so ``gpt-4o: {input_cost_per_mtok: 2.0}`` changes one price;
* ``replace: true`` in an entry takes it whole, inheriting nothing from the packaged entry;
* ``enabled: false`` hides a model (the registry leaves it out).

A model with no price fails to load; it is never priced at $0. Every error is a
:class:`~somaagent.errors.ConfigurationError` naming the file, the model and the field.
:func:`load_specs` is the whole path from files to validated :class:`~.specs.ModelSpec` objects;
:class:`~somaagent.llm.registry.ModelRegistry` calls it and indexes the result.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from somaagent.errors import ConfigurationError
from somaagent.llm.specs import PRICE_FIELDS, ModelSpec

__all__ = ["PACKAGED_SOURCE", "Entries", "load_specs", "merge", "packaged_entries", "parse"]

PACKAGED_SOURCE = "packaged models.yaml"


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (YAML keeps the last)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)

Entries = dict[str, dict[str, Any]]


def parse(text: str, source: str) -> Entries:
    """Parse a models file into ``{name: raw entry}``; the shape is checked, the fields are not."""
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{source}: not valid YAML: {exc}") from exc
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigurationError(f"{source}: expected a mapping with a 'models' key")
    unknown = [k for k in document if k != "models" and not str(k).startswith("x-")]
    if unknown:
        raise ConfigurationError(
            f"{source}: unknown top-level key(s) {', '.join(map(repr, unknown))}; "
            "expected 'models' (keys starting with 'x-' are free for YAML anchors)"
        )
    models = document.get("models") or {}
    if not isinstance(models, dict):
        raise ConfigurationError(f"{source}: 'models' must map model names to their fields")
    entries: Entries = {}
    for name, entry in models.items():
        if not isinstance(name, str):
            raise ConfigurationError(f"{source}: model name {name!r} is not a string")
        if not isinstance(entry, dict):
            raise ConfigurationError(
                f"{source}: model {name!r}: expected a mapping of fields, got {entry!r}"
            )
        if "name" in entry and entry["name"] != name:
            raise ConfigurationError(
                f"{source}: model {name!r}: field 'name' ({entry['name']!r}) differs from its key"
            )
        entries[name] = dict(entry)
    return entries


@lru_cache(maxsize=1)
def packaged_entries() -> Entries:
    text = resources.files("somaagent.llm").joinpath("models.yaml").read_text(encoding="utf-8")
    return parse(text, PACKAGED_SOURCE)


def _read_user_file(path: Path) -> Entries:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigurationError(f"models file {str(path)!r} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"models file {str(path)!r} cannot be read: {exc}") from exc
    return parse(text, str(path))


def merge(packaged: Entries, user: Entries, user_source: str) -> tuple[Entries, dict[str, str]]:
    """The merged entries and, per name, the file(s) its fields came from."""
    merged = {name: dict(entry) for name, entry in packaged.items()}
    sources = dict.fromkeys(packaged, PACKAGED_SOURCE)
    for name, entry in user.items():
        entry = dict(entry)
        replace = entry.pop("replace", False)
        if not isinstance(replace, bool):
            raise ConfigurationError(
                f"{user_source}: model {name!r}: field 'replace' must be true or false"
            )
        if name not in merged:
            if set(entry) <= {"enabled"}:
                close = difflib.get_close_matches(name, list(merged), n=3)
                hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                raise ConfigurationError(
                    f"{user_source}: model {name!r}: there is no such model to enable or "
                    f"disable{hint}"
                )
            merged[name], sources[name] = entry, user_source
        elif replace:
            merged[name], sources[name] = entry, user_source
        else:
            base = merged[name]
            for key, value in entry.items():
                if isinstance(value, dict) and isinstance(base.get(key), dict):
                    base[key] = {**base[key], **value}
                else:
                    base[key] = value
            sources[name] = f"{PACKAGED_SOURCE} + {user_source}"
    return merged, sources


def _describe(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"]
        if error["type"] == "missing" and where in PRICE_FIELDS:
            message += " (a model with no price is an error, never $0: give USD per 1M tokens)"
        problems.append(f"{where}: {message}" if where else message)
    return problems


def _validate(entries: Entries, sources: Mapping[str, str]) -> list[ModelSpec]:
    specs: list[ModelSpec] = []
    problems: list[str] = []
    for name, entry in entries.items():
        try:
            specs.append(ModelSpec.model_validate({**entry, "name": name}))
        except ValidationError as exc:
            problems.extend(f"model {name!r} ({sources[name]}): {p}" for p in _describe(exc))
    if problems:
        raise ConfigurationError("invalid model registry:\n  " + "\n  ".join(problems))
    return specs


def load_specs(user_file: Path | None) -> list[ModelSpec]:
    """The packaged models, with ``user_file`` merged on top, validated.

    Raises:
        ConfigurationError: a file is missing, unreadable or invalid.
    """
    packaged = packaged_entries()
    if user_file is None:
        return _validate(packaged, dict.fromkeys(packaged, PACKAGED_SOURCE))
    entries, sources = merge(packaged, _read_user_file(user_file), str(user_file))
    return _validate(entries, sources)
