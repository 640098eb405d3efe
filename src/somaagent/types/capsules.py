"""The capsule API's wire models, shared by the gateway and the SDK.

Requests forbid unknown fields (a typo is a 422 naming it); responses ignore them, so an older
SDK keeps working against a newer gateway. Imports only pydantic and the standard library.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "Capsule",
    "CapsuleInstall",
    "CapsuleTool",
    "CapsuleVersion",
    "ExecuteRequest",
    "Execution",
]

CapsuleKind = Literal["python", "mcp", "builtin"]
MAX_ARCHIVE_BASE64 = 8 * 1024 * 1024


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CapsuleTool(_Response):
    """One tool of a capsule, as MCP describes it, with its pinned definition hash."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=dict)
    output_schema: dict[str, Any] | None = None
    annotations: dict[str, Any] = Field(default_factory=dict)
    sha256: str | None = None


class Capsule(_Response):
    """A capsule: installed for the tenant (``installed``), or offered by the catalog."""

    name: str
    version: str
    description: str = ""
    kind: CapsuleKind
    installed: bool = False
    source: Literal["catalog", "upload"] = "catalog"
    in_catalog: bool = False
    sha256: str | None = None
    tools: list[CapsuleTool] = Field(default_factory=list)
    permissions: dict[str, Any] = Field(default_factory=dict)
    installed_at: datetime | None = None


class CapsuleVersion(_Response):
    """One immutable stored version of a tenant's capsule."""

    version: str
    sha256: str
    source: Literal["catalog", "upload"] = "upload"
    current: bool = False
    created_at: datetime | None = None


class CapsuleInstall(_Request):
    """``POST /v1/capsules``: a catalog id, or an uploaded archive (base64 ``.tar.gz``/``.zip``)."""

    id: str | None = Field(default=None, max_length=64, description="a catalog capsule's id")
    archive_base64: str | None = Field(
        default=None, max_length=MAX_ARCHIVE_BASE64, description="a .tar.gz or .zip, base64"
    )

    @model_validator(mode="after")
    def _one(self) -> CapsuleInstall:
        if (self.id is None) == (self.archive_base64 is None):
            raise ValueError("give exactly one of 'id' (a catalog capsule) or 'archive_base64'")
        return self


class ExecuteRequest(_Request):
    """``POST /v1/capsules/{name}/execute``: which tool (default: the first) and its arguments."""

    tool: str | None = Field(default=None, max_length=64)
    arguments: dict[str, Any] = Field(default_factory=dict)


class Execution(_Response):
    """One recorded tool call: who, what, how long, and how it ended.

    ``content`` and ``structured`` are the MCP result (``content``, ``structuredContent``); a
    listed execution carries only the record, not the result.
    """

    id: str
    capsule: str
    version: str
    tool: str
    content: list[dict[str, Any]] = Field(default_factory=list)
    structured: dict[str, Any] | None = None
    is_error: bool = False
    error: str | None = None
    duration_ms: float = 0.0
    sandbox_tier: str = "none"
    key_id: str | None = None
    created_at: datetime | None = None

    @property
    def text(self) -> str:
        """The text blocks of the result, joined by newlines."""
        return "\n".join(str(b.get("text", "")) for b in self.content if b.get("type") == "text")
