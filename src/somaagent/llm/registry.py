"""The model registry: every model SomaAgent can route to, with prices, limits and quality.

The packaged ``models.yaml`` (next to this module) describes the models; a user's models file
is merged on top of it (:meth:`ModelRegistry.load`), and :meth:`ModelRegistry.reload_if_changed`
picks up edits to that file without a restart. Each model is a :class:`ModelSpec`.

Merging, per entry of the user file (keyed by registry name):

* a new name adds a model; the entry must be complete;
* an existing name is merged field by field onto the packaged entry (nested mappings such as
  ``quality`` one level deep), so ``gpt-4o: {input_cost_per_mtok: 2.0}`` changes one price;
* ``replace: true`` in an entry takes it whole, inheriting nothing from the packaged entry;
* ``enabled: false`` hides a model: it is left out of :meth:`~ModelRegistry.all` and
  :meth:`~ModelRegistry.get` refuses it.

A model with no price fails to load; it is never priced at $0. A price of 0 is allowed only for
provider ``local`` (the embedded model), written out explicitly. Every load error is a
:class:`~somaagent.errors.ConfigurationError` naming the file, the model and the field.

Names resolve in this order, case-insensitively: registry name, an explicit alias, the
provider's model id (when exactly one model has it).
"""

from __future__ import annotations

import difflib
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from somaagent.errors import ConfigurationError
from somaagent.types import ModelInfo

__all__ = [
    "CAPABILITIES",
    "KNOWN_PROVIDERS",
    "TASK_CATEGORIES",
    "Capability",
    "Latency",
    "ModelRegistry",
    "ModelSpec",
    "Quality",
    "TaskCategory",
    "UnknownModelError",
]

logger = logging.getLogger(__name__)

Capability = Literal["tools", "json_mode", "vision", "streaming", "reasoning"]
"""What a model can do: tool calls, a native JSON mode, image input, streaming, hidden reasoning."""

CAPABILITIES: frozenset[str] = frozenset(get_args(Capability))

TaskCategory = Literal["coding", "math", "reasoning", "writing", "extraction", "chat"]
"""The task categories that carry their own quality score."""

TASK_CATEGORIES: tuple[str, ...] = get_args(TaskCategory)

KNOWN_PROVIDERS: tuple[str, ...] = ("openai", "anthropic", "openai_compatible", "local")
"""The built-in providers. ``openai_compatible`` is an open model behind an OpenAI-compatible
server (vLLM, Ollama, llama.cpp server, Together, Groq); plugins may add other ids."""

FREE_PROVIDERS: frozenset[str] = frozenset({"local"})
"""Providers whose models may be priced at 0 (they run in this process)."""

RESERVED_NAMES: frozenset[str] = frozenset({"auto"})
"""Names a model may not take: ``auto`` asks the router to choose."""

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$"
_PACKAGED_SOURCE = "packaged models.yaml"
_PRICE_FIELDS = ("input_cost_per_mtok", "output_cost_per_mtok", "cached_input_cost_per_mtok")


class UnknownModelError(KeyError):
    """No enabled model has this name, alias or provider id.

    Attributes:
        name: the name that was asked for.
        suggestions: registry names close to it, best first.
    """

    def __init__(self, name: str, suggestions: Iterable[str] = (), *, reason: str = "") -> None:
        self.name = name
        self.suggestions = list(suggestions)
        message = reason or f"unknown model {name!r}"
        if self.suggestions:
            message += "; did you mean " + ", ".join(repr(s) for s in self.suggestions) + "?"
        else:
            message += "; GET /v1/models lists the models"
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        # KeyError's own __str__ would wrap the message in quotes.
        return self.message


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Quality(_Frozen):
    """Quality scores in [0, 1]; comparable across models within a category, not across them.

    ``models.yaml`` says where each figure comes from. A category without a score falls back
    to ``overall``.
    """

    overall: float = Field(ge=0.0, le=1.0)
    coding: float | None = Field(default=None, ge=0.0, le=1.0)
    math: float | None = Field(default=None, ge=0.0, le=1.0)
    reasoning: float | None = Field(default=None, ge=0.0, le=1.0)
    writing: float | None = Field(default=None, ge=0.0, le=1.0)
    extraction: float | None = Field(default=None, ge=0.0, le=1.0)
    chat: float | None = Field(default=None, ge=0.0, le=1.0)

    def for_task(self, category: TaskCategory | None = None) -> float:
        """The score for a task category, or ``overall`` when it has none (or none is given)."""
        if category is None:
            return self.overall
        score: float | None = getattr(self, category)
        return self.overall if score is None else score


class Latency(_Frozen):
    """A latency prior, used until live measurements of the model exist."""

    ttft_ms: float = Field(gt=0.0, allow_inf_nan=False, description="time to first token")
    tokens_per_s: float = Field(gt=0.0, allow_inf_nan=False, description="output tokens/second")

    def expected_ms(self, output_tokens: int) -> float:
        """Expected wall time of an answer ``output_tokens`` long, in milliseconds."""
        return self.ttft_ms + 1000.0 * max(output_tokens, 0) / self.tokens_per_s


def _price(description: str) -> Any:
    # strict: a price written as a string ("3") or a bool is a typo, not a number.
    return Field(ge=0.0, allow_inf_nan=False, strict=True, description=description)


class ModelSpec(_Frozen):
    """One model of the registry. Prices are USD per million tokens.

    Attributes:
        name: the registry name (``claude-3-sonnet``); what callers and the router use.
        provider: ``openai``, ``anthropic``, ``openai_compatible``, ``local``, or a plugin's id.
        provider_model_id: the id sent to the provider.
        aliases: other names that resolve to this model (snapshot ids, vendor ids).
        input_cost_per_mtok: price of prompt tokens.
        output_cost_per_mtok: price of completion tokens (hidden reasoning tokens included).
        cached_input_cost_per_mtok: price of prompt tokens read from the provider's prompt
            cache; ``None`` where the provider has no such price.
        context_window: prompt plus completion, in tokens.
        max_output_tokens: the most the model will generate in one answer.
        capabilities: a subset of :data:`CAPABILITIES`.
        quality: quality scores, see :class:`Quality`.
        latency: the latency prior, see :class:`Latency`.
        enabled: ``False`` hides the model (set in a user file).
        base_url: where to send requests; ``None`` uses the provider adapter's default.
        retires_on: the provider's announced retirement date, after which calls fail.
        last_resort: ``True``: the router picks the model only when no other is eligible
            (the embedded local model); naming it explicitly always works.
    """

    name: str = Field(pattern=_NAME_PATTERN, max_length=200)
    provider: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    provider_model_id: str = Field(min_length=1, max_length=200)
    aliases: tuple[str, ...] = ()
    input_cost_per_mtok: float = _price("USD per million prompt tokens")
    output_cost_per_mtok: float = _price("USD per million completion tokens")
    cached_input_cost_per_mtok: float | None = Field(
        default=None,
        ge=0.0,
        allow_inf_nan=False,
        strict=True,
        description="USD per million prompt tokens served from the provider's cache",
    )
    context_window: int = Field(gt=0, strict=True)
    max_output_tokens: int = Field(gt=0, strict=True)
    capabilities: frozenset[Capability] = frozenset()
    quality: Quality
    latency: Latency
    enabled: bool = True
    base_url: str | None = None
    retires_on: date | None = None
    last_resort: bool = False

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if self.name.casefold() in RESERVED_NAMES:
            raise ValueError(f"{self.name!r} is reserved (it asks the router to choose)")
        if self.provider not in FREE_PROVIDERS:
            free = [f for f in _PRICE_FIELDS if getattr(self, f) == 0]
            if free:
                raise ValueError(
                    f"{', '.join(free)} is 0, allowed only for provider 'local'; "
                    "give the real price in USD per million tokens"
                )
        if (
            self.cached_input_cost_per_mtok is not None
            and self.cached_input_cost_per_mtok > self.input_cost_per_mtok
        ):
            raise ValueError("cached_input_cost_per_mtok is above input_cost_per_mtok")
        if self.max_output_tokens > self.context_window:
            raise ValueError("max_output_tokens is larger than context_window")
        for alias in self.aliases:
            if not alias or alias != alias.strip():
                raise ValueError(f"alias {alias!r} is empty or has surrounding spaces")
        return self

    def supports(self, *capabilities: Capability) -> bool:
        """Whether the model has every one of ``capabilities``."""
        return all(c in self.capabilities for c in capabilities)

    def quality_for(self, category: TaskCategory | None = None) -> float:
        """The quality score for a task category (``overall`` when it has none)."""
        return self.quality.for_task(category)

    def retired(self, today: date | None = None) -> bool:
        """Whether the provider's announced retirement date has passed."""
        return self.retires_on is not None and (today or date.today()) >= self.retires_on

    def to_info(self) -> ModelInfo:
        """The public description served by ``GET /v1/models``."""
        return ModelInfo(
            id=self.name,
            provider=self.provider,
            provider_model_id=self.provider_model_id,
            context_window=self.context_window,
            max_output_tokens=self.max_output_tokens,
            input_cost_per_mtok=self.input_cost_per_mtok,
            output_cost_per_mtok=self.output_cost_per_mtok,
        )


# -- reading files ---------------------------------------------------------------------------


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

_Entries = dict[str, dict[str, Any]]


def _parse(text: str, source: str) -> _Entries:
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
    entries: _Entries = {}
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
def _packaged_entries() -> _Entries:
    text = resources.files("somaagent.llm").joinpath("models.yaml").read_text(encoding="utf-8")
    return _parse(text, _PACKAGED_SOURCE)


def _read_user_file(path: Path) -> _Entries:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigurationError(f"models file {str(path)!r} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"models file {str(path)!r} cannot be read: {exc}") from exc
    return _parse(text, str(path))


def _merge(packaged: _Entries, user: _Entries, user_source: str) -> tuple[_Entries, dict[str, str]]:
    """The merged entries and, per name, the file(s) its fields came from."""
    merged = {name: dict(entry) for name, entry in packaged.items()}
    sources = dict.fromkeys(packaged, _PACKAGED_SOURCE)
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
            sources[name] = f"{_PACKAGED_SOURCE} + {user_source}"
    return merged, sources


def _describe(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"]
        if error["type"] == "missing" and where in _PRICE_FIELDS:
            message += " (a model with no price is an error, never $0: give USD per 1M tokens)"
        problems.append(f"{where}: {message}" if where else message)
    return problems


def _validate(entries: _Entries, sources: Mapping[str, str]) -> list[ModelSpec]:
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


# -- the index -------------------------------------------------------------------------------


def _key(name: str) -> str:
    return name.strip().casefold()


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """One consistent view of the registry; replaced whole on reload, so readers need no lock."""

    models: dict[str, ModelSpec]  # enabled models by registry name, in file order
    index: dict[str, str]  # casefolded name, alias or unique provider id -> registry name
    disabled: dict[str, str] = field(default_factory=dict)  # the same, for disabled models

    @classmethod
    def build(cls, specs: Iterable[ModelSpec]) -> _Snapshot:
        specs = list(specs)
        owners: dict[str, str] = {}  # key -> registry name, for names and explicit aliases
        problems: list[str] = []
        for spec in specs:
            for key in {_key(spec.name), *(_key(a) for a in spec.aliases)}:
                owner = owners.setdefault(key, spec.name)
                if owner != spec.name:
                    problems.append(f"{key!r} names both model {owner!r} and model {spec.name!r}")
        if problems:
            raise ConfigurationError(
                "invalid model registry:\n  " + "\n  ".join(sorted(set(problems)))
            )
        # Provider ids resolve only where they are unambiguous and name nothing else: two
        # entries may share an id (the same model at two prices, e.g. a user's Azure deal).
        by_provider_id: dict[str, set[str]] = {}
        for spec in specs:
            by_provider_id.setdefault(_key(spec.provider_model_id), set()).add(spec.name)
        for key, names in by_provider_id.items():
            if len(names) == 1 and key not in owners:
                owners[key] = next(iter(names))
        enabled = {s.name for s in specs if s.enabled}
        return cls(
            models={s.name: s for s in specs if s.enabled},
            index={k: n for k, n in owners.items() if n in enabled},
            disabled={k: n for k, n in owners.items() if n not in enabled},
        )


def _signature(path: Path) -> tuple[int, int, int] | None:
    """What tells us a file changed: mtime, size and inode (an editor may replace the file)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ModelRegistry:
    """The models SomaAgent can route to, looked up by name, alias or provider id.

    Build one with :meth:`load` (the packaged file plus an optional user file), or directly
    from specs (tests, tools). Lookups never touch the disk; :meth:`reload_if_changed` is cheap
    enough to call on every request.

    Args:
        models: the models, enabled or not.
        user_file: the user's models file this registry was loaded with, if any.
        check_interval: the least number of seconds between two looks at the user file.

    Raises:
        ConfigurationError: two models claim the same name or alias.
    """

    def __init__(
        self,
        models: Iterable[ModelSpec],
        *,
        user_file: Path | None = None,
        check_interval: float = 1.0,
    ) -> None:
        self._snapshot = _Snapshot.build(models)
        self._user_file = user_file
        self._check_interval = check_interval
        self._signature = _signature(user_file) if user_file is not None else None
        self._last_check = time.monotonic()
        self._lock = threading.Lock()
        self.last_error: ConfigurationError | None = None
        """The error of the last failed reload; ``None`` after a successful one."""

    @classmethod
    def load(cls, user_file: Path | None = None, *, check_interval: float = 1.0) -> ModelRegistry:
        """Load the packaged models, with ``user_file`` merged on top.

        Args:
            user_file: a YAML models file (same shape as the packaged ``models.yaml``).
            check_interval: the least number of seconds between two looks at ``user_file``
                by :meth:`reload_if_changed`.

        Raises:
            ConfigurationError: a file is missing, unreadable or invalid; the message names
                the file, the model and the field.
        """
        path = Path(user_file) if user_file is not None else None
        signature = _signature(path) if path is not None else None
        registry = cls(_load_specs(path), user_file=path, check_interval=check_interval)
        # The signature from before the read: an edit made during the read is seen next time.
        registry._signature = signature
        return registry

    @property
    def user_file(self) -> Path | None:
        """The user's models file, if the registry was loaded with one."""
        return self._user_file

    # -- lookups ---------------------------------------------------------------------------

    def find(self, name: str) -> ModelSpec | None:
        """The enabled model with this registry name, alias or provider id, or ``None``."""
        snapshot = self._snapshot
        registry_name = snapshot.index.get(_key(name))
        return snapshot.models[registry_name] if registry_name is not None else None

    def get(self, name: str) -> ModelSpec:
        """The enabled model with this registry name, alias or provider id.

        Raises:
            UnknownModelError: no enabled model answers to ``name``; the message lists the
                closest names.
        """
        spec = self.find(name)
        if spec is not None:
            return spec
        snapshot = self._snapshot
        disabled = snapshot.disabled.get(_key(name))
        if disabled is not None:
            raise UnknownModelError(
                name, reason=f"model {disabled!r} is disabled (enabled: false in the models file)"
            )
        raise UnknownModelError(name, self.suggest(name))

    def suggest(self, name: str, *, limit: int = 3) -> list[str]:
        """Registry names of enabled models close to ``name``, best first."""
        snapshot = self._snapshot
        close = difflib.get_close_matches(_key(name), list(snapshot.index), n=limit * 3, cutoff=0.6)
        return list(dict.fromkeys(snapshot.index[k] for k in close))[:limit]

    def all(self) -> list[ModelSpec]:
        """Every enabled model, in file order."""
        return list(self._snapshot.models.values())

    def names(self) -> list[str]:
        """The registry names of every enabled model, in file order."""
        return list(self._snapshot.models)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self.all())

    def __len__(self) -> int:
        return len(self._snapshot.models)

    # -- reloading -------------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the packaged and user files now.

        Raises:
            ConfigurationError: the files are invalid; the registry keeps its current models.
        """
        signature = _signature(self._user_file) if self._user_file is not None else None
        self._snapshot = _Snapshot.build(_load_specs(self._user_file))
        self._signature = signature
        self.last_error = None

    def reload_if_changed(self) -> bool:
        """Reload when the user file changed since it was last read; cheap to call often.

        Looks at the file (one ``stat``) at most once per ``check_interval`` seconds, and never
        blocks: a call made while another thread reloads returns at once. A file that became
        invalid (or vanished) is logged and kept in :attr:`last_error`; the registry keeps
        serving the models it had, and the file is not read again until it changes.

        Returns:
            Whether the registry was reloaded.
        """
        if self._user_file is None:
            return False
        now = time.monotonic()
        if now - self._last_check < self._check_interval:
            return False
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._last_check = now
            signature = _signature(self._user_file)
            if signature == self._signature:
                return False
            try:
                snapshot = _Snapshot.build(_load_specs(self._user_file))
            except ConfigurationError as exc:
                self._signature = signature
                self.last_error = exc
                logger.error(
                    "models file %s not reloaded, keeping the last good one: %s",
                    self._user_file,
                    exc,
                )
                return False
            self._snapshot = snapshot
            self._signature = signature
            self.last_error = None
            logger.info("models file %s reloaded: %d models", self._user_file, len(snapshot.models))
            return True
        finally:
            self._lock.release()


def _load_specs(user_file: Path | None) -> list[ModelSpec]:
    packaged = _packaged_entries()
    if user_file is None:
        return _validate(packaged, dict.fromkeys(packaged, _PACKAGED_SOURCE))
    entries, sources = _merge(packaged, _read_user_file(user_file), str(user_file))
    return _validate(entries, sources)
