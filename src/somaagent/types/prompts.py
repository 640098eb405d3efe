"""The prompt API's wire models, shared by the gateway and the SDK.

Requests forbid unknown fields (a typo is a 422 naming it); responses ignore them, so an older
SDK keeps working against a newer gateway. Like :mod:`somaagent.types.templates`, this module
imports only pydantic and the standard library.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from somaagent.types.templates import Role, TemplateSpec, VariableSpec, VariableType

__all__ = [
    "ChainRenderRequest",
    "LabelUpdate",
    "PromptDiff",
    "PromptLabels",
    "PromptSummary",
    "PromptVersion",
    "RenderRequest",
    "RenderedChain",
    "RenderedPrompt",
    "Source",
    "VariablePublic",
]

Source = Literal["tenant", "default"]
"""Where a version comes from: the tenant's own store, or the templates shipped with SomaAgent
(those are version 0)."""

MAX_CHAIN = 20
MAX_VERSION = 999_999_999
"""The largest version number a request may name: nine digits, as in ``NAME@VERSION``. Versions
are stored in 32-bit ``INTEGER`` columns, where PostgreSQL refuses larger values (a 500 before
this bound; SQLite stores them)."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore")


class VariablePublic(_Response):
    """A declared variable, as the API shows it."""

    name: str
    type: VariableType = "string"
    required: bool = True
    default: JsonValue = None
    description: str = ""


class PromptVersion(_Response):
    """One immutable version of a template.

    Attributes:
        version: 1, 2, ... for the tenant's own versions; 0 for a shipped default.
        labels: the labels that point at this version.
        source: ``tenant`` or ``default``.
        created_at: when it was saved (``None`` for a shipped default).
    """

    name: str
    version: int
    role: Role
    body: str
    variables: list[VariablePublic] = Field(default_factory=list)
    description: str = ""
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    labels: list[str] = Field(default_factory=list)
    source: Source = "tenant"
    created_at: datetime | None = None

    def to_spec(self) -> TemplateSpec:
        """The version as a spec, e.g. to edit and push it again."""
        return TemplateSpec(
            name=self.name,
            role=self.role,
            body=self.body,
            variables=[VariableSpec.model_validate(v.model_dump()) for v in self.variables],
            description=self.description,
            metadata=self.metadata,
        )


class PromptSummary(_Response):
    """A template in a list: its latest version and its labels.

    Attributes:
        latest_version: the newest version (0 when only the shipped default exists).
        labels: label name → version.
        overrides_default: the tenant has its own versions of a shipped default's name.
    """

    name: str
    latest_version: int
    role: Role
    description: str = ""
    labels: dict[str, int] = Field(default_factory=dict)
    source: Source = "tenant"
    overrides_default: bool = False
    updated_at: datetime | None = None


class LabelUpdate(_Request):
    """Point a label at a version (``PUT /v1/prompts/{name}/labels/{label}``).

    Attributes:
        version: the version the label should point at.
        expected_version: move the label only if it still points here (compare-and-set);
            a 409 otherwise. ``0`` means "only if the label does not exist yet".
    """

    version: int = Field(ge=1, le=MAX_VERSION)
    expected_version: int | None = Field(default=None, ge=0, le=MAX_VERSION)


class PromptLabels(_Response):
    """A template's labels: label name → version."""

    name: str
    labels: dict[str, int] = Field(default_factory=dict)


class PromptDiff(_Response):
    """A unified diff between two versions, each shown as a template file."""

    name: str
    from_version: int
    to_version: int
    diff: str
    changed: bool


class RenderRequest(_Request):
    """``POST /v1/prompts/{ref}/render``.

    Attributes:
        variables: values for the template's declared variables.
        model: count tokens as this model would (a registry name); the gateway's default
            model when omitted.
    """

    variables: dict[str, JsonValue] = Field(default_factory=dict)
    model: str | None = Field(default=None, max_length=200)


class RenderedPrompt(_Response):
    """A rendered template: a chat message, with where it came from and its size.

    Attributes:
        content: the rendered text.
        tokens: the text's tokens for ``model`` (no chat-format overhead), when counted.
    """

    name: str
    version: int
    role: Role
    content: str
    tokens: int | None = None
    model: str | None = None
    source: Source = "tenant"

    def as_message(self) -> dict[str, str]:
        """``{"role": ..., "content": ...}``, ready for a chat request."""
        return {"role": self.role, "content": self.content}


class ChainRenderRequest(_Request):
    """``POST /v1/prompts/render``: render several templates into one message list.

    Attributes:
        prompts: references (``name``, ``name@3``, ``name:production``), in message order.
        variables: shared by every template; each takes the ones it declares.
        model: count tokens as this model would; the gateway's default when omitted.
    """

    prompts: list[str] = Field(min_length=1, max_length=MAX_CHAIN)
    variables: dict[str, JsonValue] = Field(default_factory=dict)
    model: str | None = Field(default=None, max_length=200)


class RenderedChain(_Response):
    """A chain's chat messages, in order.

    Attributes:
        total_tokens: the whole list's prompt tokens for ``model``, chat-format overhead
            included (what the model will count), when counted.
    """

    messages: list[RenderedPrompt]
    total_tokens: int | None = None
    model: str | None = None

    def as_messages(self) -> list[dict[str, str]]:
        """The messages as ``{"role", "content"}`` dicts, ready for a chat request."""
        return [m.as_message() for m in self.messages]
