"""The capsule manifest (``capsule.yaml``): what a capsule is, what its tools take and give,
what it may touch, and the hashes that pin its content and each tool definition.

A tool definition's hash covers its name, description, schemas and annotations: an agent that
approved a tool approved exactly that text, so a changed description (a "rug pull") is a new
hash, which the store refuses without a new version.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "MANIFEST_FILES",
    "NAME_PATTERN",
    "Manifest",
    "Permissions",
    "ToolAnnotations",
    "ToolSpec",
    "canonical_json",
    "semver_key",
    "tool_sha256",
]

NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
TOOL_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
MANIFEST_FILES = ("capsule.yaml", "capsule.yml", "capsule.json")
HOST_PATTERN = r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,252})(:\d{1,5})?$"


def canonical_json(value: Any) -> bytes:
    """The one JSON encoding hashes are taken over: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def semver_key(version: str) -> tuple[int, int, int, int, str]:
    """A sort key for semantic versions (a pre-release sorts before its release)."""
    match = SEMVER.match(version)
    if match is None:
        raise ValueError(f"not a semantic version: {version!r}")
    major, minor, patch, pre = match.groups()
    return (int(major), int(minor), int(patch), 0 if pre else 1, pre or "")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolAnnotations(_Strict):
    """MCP's tool hints: advisory, shown to people and agents deciding whether to call."""

    title: str | None = None
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False
    open_world: bool = False

    def to_mcp(self) -> dict[str, Any]:
        """The MCP ``annotations`` object (camelCase hints)."""
        out: dict[str, Any] = {
            "readOnlyHint": self.read_only,
            "destructiveHint": self.destructive,
            "idempotentHint": self.idempotent,
            "openWorldHint": self.open_world,
        }
        if self.title:
            out["title"] = self.title
        return out


def _check_schema(value: dict[str, Any] | None, *, what: str) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        raise ValueError(f"{what} is not a valid JSON Schema: {exc.message}") from exc
    if value.get("type", "object") != "object":
        raise ValueError(f"{what} must describe an object (type: object)")
    return value


class ToolSpec(_Strict):
    """One tool: MCP's ``Tool`` (name, description, input/output schema, annotations)."""

    name: str = Field(pattern=TOOL_PATTERN)
    description: str = Field(default="", max_length=4000)
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    output_schema: dict[str, Any] | None = None
    annotations: ToolAnnotations = Field(default_factory=ToolAnnotations)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """The pinned hash of this definition; computed when absent, checked when given."""

    @field_validator("input_schema")
    @classmethod
    def _input(cls, value: dict[str, Any]) -> dict[str, Any]:
        checked = _check_schema(value, what="input_schema")
        assert checked is not None
        return checked

    @field_validator("output_schema")
    @classmethod
    def _output(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return _check_schema(value, what="output_schema")

    def definition(self) -> dict[str, Any]:
        """What the hash covers: everything a caller reads before deciding to call."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "annotations": self.annotations.model_dump(),
        }

    def to_mcp(self) -> dict[str, Any]:
        """The MCP ``Tool`` object for ``tools/list``."""
        tool: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "inputSchema": self.input_schema,
            "annotations": self.annotations.to_mcp(),
        }
        if self.output_schema is not None:
            tool["outputSchema"] = self.output_schema
        return tool


def tool_sha256(tool: ToolSpec) -> str:
    """The sha256 of a tool's definition (its canonical JSON)."""
    return hashlib.sha256(canonical_json(tool.definition())).hexdigest()


class Permissions(_Strict):
    """What a capsule may use. Everything not granted is denied."""

    network: Literal["none"] | list[str] = "none"
    """``none``, or the hosts (``example.com``, ``*.example.com``, ``host:443``) it may reach."""
    filesystem: Literal["none"] | list[str] = "none"
    """``none``, or absolute host paths it may read (never write)."""
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    memory_mb: int = Field(default=256, ge=16, le=8192)
    cpu_s: int = Field(default=5, ge=1, le=600)
    processes: int = Field(default=16, ge=1, le=256)
    output_kb: int = Field(default=1024, ge=1, le=65536)
    egress_mb: int | None = Field(default=None, ge=1, le=4096)
    """Bytes (MiB) the egress proxy relays for one execution, both directions together;
    ``None``: the operator's ``SOMA_CAPSULES_EGRESS_MB``. Hashed only when set, so manifests
    written before it existed keep their content hash."""

    @field_validator("network")
    @classmethod
    def _hosts(cls, value: Literal["none"] | list[str]) -> Literal["none"] | list[str]:
        if isinstance(value, list):
            for host in value:
                if not re.match(HOST_PATTERN, host):
                    raise ValueError(f"not a host name: {host!r}")
        return value

    @field_validator("filesystem")
    @classmethod
    def _paths(cls, value: Literal["none"] | list[str]) -> Literal["none"] | list[str]:
        if isinstance(value, list):
            for path in value:
                if not path.startswith("/") or ".." in path.split("/"):
                    raise ValueError(f"not an absolute, normalised path: {path!r}")
        return value

    @property
    def wants_network(self) -> bool:
        return self.network != "none" and len(self.network) > 0


class Manifest(_Strict):
    """A capsule's ``capsule.yaml``."""

    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(max_length=64)
    description: str = Field(default="", max_length=4000)
    kind: Literal["python", "mcp", "builtin"]
    """``python``: ``entry`` is a module whose functions are the tools, served over MCP stdio
    in the sandbox; ``mcp``: an MCP server (``command`` over stdio in the sandbox, or ``url``
    over streamable HTTP); ``builtin``: a catalog capsule the gateway runs itself."""
    entry: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_./-]*\.py$")
    command: list[str] | None = Field(default=None, min_length=1)
    url: str | None = Field(default=None, pattern=r"^https?://", max_length=2000)
    tools: list[ToolSpec] = Field(default_factory=list, max_length=64)
    permissions: Permissions = Field(default_factory=Permissions)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """The pinned hash of the content; checked on install when given."""

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value == "executions":  # GET /v1/capsules/executions lists the calls
            raise ValueError("'executions' is reserved")
        return value

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        if not SEMVER.match(value):
            raise ValueError("version must be a semantic version (MAJOR.MINOR.PATCH)")
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> Manifest:
        if self.kind == "python":
            if not self.entry or self.command or self.url:
                raise ValueError(
                    "a python capsule names its module in 'entry' (and no command/url)"
                )
            if not self.tools:
                raise ValueError("a python capsule lists its tools")
        if self.kind == "mcp" and (self.command is None) == (self.url is None):
            raise ValueError("an mcp capsule has exactly one of 'command' (stdio) or 'url'")
        names = [tool.name for tool in self.tools]
        if len(set(names)) != len(names):
            raise ValueError("tool names must be unique")
        for tool in self.tools:
            if tool.sha256 is not None and tool.sha256 != tool_sha256(tool):
                raise ValueError(
                    f"tool {tool.name!r}: sha256 does not match its definition "
                    f"(expected {tool_sha256(tool)})"
                )
        return self

    def tool(self, name: str | None) -> ToolSpec:
        """The tool called ``name`` (the first tool when ``None``); ``KeyError`` if unknown."""
        if not self.tools:
            raise KeyError(name or "")
        if name is None:
            return self.tools[0]
        for tool in self.tools:
            if tool.name == name:
                return tool
        raise KeyError(name)

    def pinned(self, content_sha256: str) -> Manifest:
        """This manifest with every hash filled in."""
        tools = [tool.model_copy(update={"sha256": tool_sha256(tool)}) for tool in self.tools]
        return self.model_copy(update={"tools": tools, "sha256": content_sha256})
