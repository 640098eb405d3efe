"""What a tool call gives back: :class:`Outcome`, built from an MCP result checked against the
tool's pinned output schema (a capsule cannot return what its manifest does not promise), and
the MCP tool definitions read back as :class:`ToolSpec` (to pin or compare)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import mcp_types
from jsonschema import Draft202012Validator

from somaagent.capsules.manifest import ToolAnnotations, ToolSpec

__all__ = ["Outcome", "finish", "schema_problem", "tool_from_mcp"]


@dataclass(slots=True)
class Outcome:
    """What one tool call gave back."""

    content: list[dict[str, Any]] = field(default_factory=list)
    structured: dict[str, Any] | None = None
    is_error: bool = False
    error: str | None = None
    duration_ms: float = 0.0
    sandbox_tier: str = "none"

    @classmethod
    def failed(cls, reason: str, *, tier: str, started: float) -> Outcome:
        return cls(
            content=[{"type": "text", "text": reason}],
            is_error=True,
            error=reason,
            duration_ms=(time.perf_counter() - started) * 1000,
            sandbox_tier=tier,
        )


def tool_from_mcp(tool: mcp_types.Tool) -> ToolSpec:
    """A :class:`ToolSpec` from an MCP server's ``tools/list`` entry (to pin or compare)."""
    hints = tool.annotations
    return ToolSpec(
        name=tool.name,
        description=tool.description or "",
        input_schema=tool.input_schema,
        output_schema=tool.output_schema,
        annotations=ToolAnnotations(
            title=hints.title if hints else None,
            read_only=bool(hints and hints.read_only_hint),
            destructive=bool(hints and hints.destructive_hint),
            idempotent=bool(hints and hints.idempotent_hint),
            open_world=bool(hints and hints.open_world_hint),
        ),
    )


def schema_problem(schema: dict[str, Any] | None, value: Any) -> str | None:
    """The first way ``value`` breaks ``schema``, in words, or ``None``."""
    if schema is None:
        return None
    error = next(iter(Draft202012Validator(schema).iter_errors(value)), None)
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "(root)"
    return f"{where}: {error.message[:300]}"


def finish(
    result: mcp_types.CallToolResult, tool: ToolSpec, *, tier: str, started: float
) -> Outcome:
    """An :class:`Outcome` from an MCP result, checked against the tool's output schema."""
    content = [
        block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in result.content
    ]
    structured = result.structured_content
    outcome = Outcome(
        content=content,
        structured=structured,
        is_error=bool(result.is_error),
        duration_ms=(time.perf_counter() - started) * 1000,
        sandbox_tier=tier,
    )
    if outcome.is_error:
        outcome.error = " ".join(str(b.get("text", "")) for b in content)[:500] or "tool error"
        return outcome
    if tool.output_schema is not None:
        problem = (
            "no structured result"
            if structured is None
            else schema_problem(tool.output_schema, structured)
        )
        if problem is not None:
            reason = f"the tool's output does not match its output schema: {problem}"
            return Outcome.failed(reason, tier=tier, started=started)
    return outcome
