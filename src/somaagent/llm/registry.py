"""The model registry: every model SomaAgent can route to, looked up by name, alias or id.

The packaged ``models.yaml`` plus a user's models file merged on top (read and merged by
:mod:`somaagent.llm.models_file`; each model a :class:`~somaagent.llm.specs.ModelSpec`) become
a :class:`ModelRegistry`; :meth:`ModelRegistry.reload_if_changed` picks up edits to the user
file without a restart. ``enabled: false`` hides a model: it is left out of
:meth:`~ModelRegistry.all` and :meth:`~ModelRegistry.get` refuses it.

Names resolve in this order, case-insensitively: registry name, an explicit alias, the
provider's model id (when exactly one model has it).

The spec types are re-exported here, where most callers have always imported them from.
"""

from __future__ import annotations

import difflib
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from somaagent.errors import ConfigurationError
from somaagent.llm.models_file import load_specs
from somaagent.llm.specs import (
    CAPABILITIES,
    KNOWN_PROVIDERS,
    TASK_CATEGORIES,
    Capability,
    Latency,
    ModelSpec,
    Quality,
    TaskCategory,
)

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
        registry = cls(load_specs(path), user_file=path, check_interval=check_interval)
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
        self._snapshot = _Snapshot.build(load_specs(self._user_file))
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
                snapshot = _Snapshot.build(load_specs(self._user_file))
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
