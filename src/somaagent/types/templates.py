"""The template spec users write, its file format, and prompt references.

A template is a Jinja2 ``body`` with a ``role``, declared ``variables``, a ``description`` and
free-form ``metadata``. In a file it is YAML front matter followed by the body::

    ---
    role: user
    description: Answer from retrieved context
    variables:
      question: {type: string, description: What the user asked}
      sources: {type: list, required: false, default: []}
    ---
    Answer {{ question }} from the context below.

A whole-YAML file (with a ``body`` key) or a JSON file works too; the name defaults to the file's
stem. This module is shared by the gateway, the SDK and the CLI, so it imports only pydantic and
the standard library (PyYAML lazily, to read and write files).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from somaagent.errors import ConfigurationError

__all__ = [
    "FILE_SUFFIXES",
    "LABEL_PATTERN",
    "NAME_PATTERN",
    "RESERVED_NAMES",
    "PromptRef",
    "Role",
    "TemplateSpec",
    "VariableSpec",
    "VariableType",
    "a_type",
    "check_type",
    "dump_template_text",
    "iter_template_files",
    "json_type_name",
    "load_template_file",
    "parse_ref",
    "parse_template_text",
]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
"""Template names: no ``@``, ``:`` or ``/``, which address versions, labels and paths."""
LABEL_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
_VARIABLE_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
FILE_SUFFIXES = (".prompt", ".md", ".jinja", ".j2", ".txt", ".yaml", ".yml", ".json")
"""The files ``soma prompts push DIR`` picks up."""

VariableType = Literal["string", "integer", "number", "boolean", "list", "object", "any"]
Role = Literal["system", "user", "assistant"]

RESERVED_NAMES = frozenset(
    {
        # Jinja's own names and constants, and the sandbox's globals.
        "true",
        "false",
        "none",
        "True",
        "False",
        "None",
        "loop",
        "self",
        "caller",
        "varargs",
        "kwargs",
        "range",
        "dict",
        "namespace",
        "cycler",
        "joiner",
        "lipsum",
    }
)


def check_type(value: object, expected: VariableType) -> bool:
    """Whether ``value`` (decoded JSON) is of the declared variable type."""
    if expected == "any":
        return True
    if expected == "string":
        return isinstance(value, str)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected == "list":
        return isinstance(value, list)
    return isinstance(value, dict)


def a_type(name: str) -> str:
    """``name`` with its article, for error messages: "an integer", "a string"."""
    return f"an {name}" if name[:1] in "aeiou" else f"a {name}"


def json_type_name(value: object) -> str:
    """The variable type a decoded JSON value has, for error messages."""
    names: tuple[VariableType, ...] = ("boolean", "integer", "number", "string", "list", "object")
    for name in names:
        if check_type(value, name):
            return name
    return "null" if value is None else type(value).__name__


class VariableSpec(BaseModel):
    """One declared variable.

    Attributes:
        name: how the body refers to it.
        type: what a value must be; ``any`` accepts every JSON value.
        required: whether a render must give it; a variable with a default is optional.
        default: the value of an optional variable that was not given (``None`` if unset).
        description: what it is for, shown to people filling it in.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_VARIABLE_PATTERN)
    type: VariableType = "string"
    required: bool = True
    default: JsonValue = None
    description: str = Field(default="", max_length=2_000)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in RESERVED_NAMES:
            raise ValueError(f"{name!r} is reserved by the template language; pick another name")
        return name

    @model_validator(mode="after")
    def _default_fits(self) -> VariableSpec:
        if self.default is None:
            return self
        if "required" not in self.model_fields_set:
            self.required = False  # a default makes a variable optional unless said otherwise
        elif self.required:
            raise ValueError(f"variable {self.name!r} has a default, so it cannot be required")
        if not check_type(self.default, self.type):
            raise ValueError(
                f"the default of {self.name!r} is {a_type(json_type_name(self.default))}, "
                f"not {a_type(self.type)}"
            )
        return self


class TemplateSpec(BaseModel):
    """A prompt template as a user writes it (the body of ``POST /v1/prompts``).

    Attributes:
        name: the template's name, shared by all its versions.
        role: the chat role its rendered text takes.
        body: the Jinja2 source.
        variables: the variables the body may use; ``{name: spec}`` in a file works too.
        description: what the template is for.
        metadata: free-form JSON (model hints, owners, tags).
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    role: Role = "user"
    body: str = Field(min_length=1)
    variables: list[VariableSpec] = Field(default_factory=list, max_length=100)
    description: str = Field(default="", max_length=2_000)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("variables", mode="before")
    @classmethod
    def _variables_from_mapping(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return [
                {"name": name, **(spec if isinstance(spec, Mapping) else {"type": spec})}
                for name, spec in value.items()
            ]
        return value

    @field_validator("variables")
    @classmethod
    def _unique_variables(cls, variables: list[VariableSpec]) -> list[VariableSpec]:
        seen: set[str] = set()
        for variable in variables:
            if variable.name in seen:
                raise ValueError(f"variable {variable.name!r} is declared twice")
            seen.add(variable.name)
        return variables

    def variable(self, name: str) -> VariableSpec | None:
        """The declared variable ``name``, if any."""
        return next((v for v in self.variables if v.name == name), None)


# -- references ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PromptRef:
    """Which version of a template: the latest, ``name@version`` or ``name:label``."""

    name: str
    version: int | None = None
    label: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        if self.label is not None:
            return f"{self.name}:{self.label}"
        return self.name


_REF = re.compile(r"^(?P<name>[^@:]+)(?:@(?P<version>\d{1,9})|:(?P<label>[^@:]+))?$")


def parse_ref(ref: str) -> PromptRef:
    """Parse ``name``, ``name@3`` or ``name:production``.

    Raises:
        ValueError: the reference is not one of those forms.
    """
    match = _REF.match(ref)
    if match is None or not re.match(NAME_PATTERN, match["name"]):
        raise ValueError(
            f"invalid prompt reference {ref!r}: use NAME, NAME@VERSION or NAME:LABEL "
            "(names are letters, digits, '_', '.' and '-')"
        )
    label = match["label"]
    if label is not None and not re.match(LABEL_PATTERN, label):
        raise ValueError(f"invalid label {label!r}: lowercase letters, digits, '_' and '-'")
    version = int(match["version"]) if match["version"] is not None else None
    return PromptRef(match["name"], version=version, label=label)


# -- files -----------------------------------------------------------------------------------


def _yaml() -> Any:
    try:
        import yaml
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            "reading and writing template files needs PyYAML: pip install pyyaml "
            "(it comes with the server extra: pip install 'somaagent[server]')"
        ) from exc
    return yaml


def _load_yaml(text: str, where: str) -> Any:
    yaml = _yaml()
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{where}: invalid YAML: {exc}") from exc


_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(?P<meta>.*?)^---[ \t]*(?:\r?\n|\Z)", re.S | re.M)


def parse_template_text(text: str, *, name: str, source: str = "<text>") -> TemplateSpec:
    """Read a template from a file's text: front matter + body, YAML or JSON.

    Args:
        text: the file's contents.
        name: the name to use when the file does not give one (usually the file's stem).
        source: where the text came from, for error messages.

    Raises:
        ValueError: the text is not a template (pydantic's ``ValidationError`` is one).
        ConfigurationError: PyYAML is needed and missing.
    """
    data: Any
    if source.endswith(".json"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{source}: invalid JSON: {exc}") from exc
    elif source.endswith((".yaml", ".yml")):
        data = _load_yaml(text, source)
    else:
        match = _FRONT_MATTER.match(text)
        if match is None:
            data = {"body": text}
        else:
            data = _load_yaml(match["meta"], source) or {}
            if not isinstance(data, dict):
                raise ValueError(f"{source}: the front matter must be a YAML mapping")
            if "body" in data:
                raise ValueError(f"{source}: the body follows the front matter, not in it")
            data["body"] = text[match.end() :]
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a mapping with a `body`")
    data.setdefault("name", name)
    return TemplateSpec.model_validate(data)


def load_template_file(path: str | Path) -> TemplateSpec:
    """Read one template file; its name defaults to the file name without suffixes."""
    path = Path(path)
    stem = path.name.split(".", 1)[0]
    return parse_template_text(path.read_text(encoding="utf-8"), name=stem, source=str(path))


def iter_template_files(path: str | Path) -> Iterator[Path]:
    """``path`` itself, or the template files in a folder (sorted, hidden files skipped)."""
    path = Path(path)
    if not path.is_dir():
        yield path
        return
    for child in sorted(path.iterdir()):
        if child.is_file() and not child.name.startswith(".") and child.suffix in FILE_SUFFIXES:
            yield child


def dump_template_text(spec: TemplateSpec) -> str:
    """The template as a file: YAML front matter, then the body (what diffs compare)."""
    meta: dict[str, Any] = {"name": spec.name, "role": spec.role}
    if spec.description:
        meta["description"] = spec.description
    if spec.variables:
        meta["variables"] = [v.model_dump(exclude_defaults=True) for v in spec.variables]
    if spec.metadata:
        meta["metadata"] = spec.metadata
    front = _yaml().safe_dump(meta, sort_keys=False, allow_unicode=True, width=100)
    body = spec.body if spec.body.endswith("\n") else spec.body + "\n"
    return f"---\n{front}---\n{body}"
