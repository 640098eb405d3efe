"""Wire models from stored capsules, and the words of a refused re-install."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from somaagent.capsules.catalog import catalog_ids
from somaagent.capsules.manifest import Manifest, ToolSpec
from somaagent.capsules.runner import Outcome
from somaagent.capsules.tables import CapsuleExecutionRow
from somaagent.errors import ValidationError
from somaagent.types.capsules import Capsule, CapsuleTool, Execution

__all__ = ["capsule_public", "changed_message", "decode_archive", "execution_public"]


def _tool_public(tool: ToolSpec) -> CapsuleTool:
    return CapsuleTool(
        name=tool.name,
        description=tool.description,
        input_schema=tool.input_schema,
        output_schema=tool.output_schema,
        annotations=tool.annotations.model_dump(exclude_none=True),
        sha256=tool.sha256,
    )


def capsule_public(
    manifest: Manifest, *, installed: bool, source: str, installed_at: Any = None
) -> Capsule:
    """The wire model of a capsule."""
    return Capsule(
        name=manifest.name,
        version=manifest.version,
        description=manifest.description,
        kind=manifest.kind,
        installed=installed,
        source="catalog" if source == "catalog" else "upload",
        in_catalog=manifest.name in catalog_ids(),
        sha256=manifest.sha256,
        tools=[_tool_public(tool) for tool in manifest.tools],
        permissions=manifest.permissions.model_dump(),
        installed_at=installed_at,
    )


def execution_public(row: CapsuleExecutionRow, outcome: Outcome | None) -> Execution:
    return Execution(
        id=row.id,
        capsule=row.capsule,
        version=row.version,
        tool=row.tool,
        content=outcome.content if outcome else [],
        structured=outcome.structured if outcome else None,
        is_error=row.is_error,
        error=row.error,
        duration_ms=row.duration_ms,
        sandbox_tier=row.sandbox_tier,
        key_id=row.key_id,
        created_at=row.created_at,
    )


def changed_message(old: Manifest, new: Manifest) -> str:
    old_tools = {tool.name: tool.sha256 for tool in old.tools}
    changed = [t.name for t in new.tools if old_tools.get(t.name) != t.sha256]
    changed += [name for name in old_tools if name not in {t.name for t in new.tools}]
    what = (
        f"tool definition(s) {', '.join(sorted(set(changed)))} changed"
        if changed
        else "its content changed"
    )
    return (
        f"{new.name} {new.version} is already installed with different content ({what}); "
        "versions are immutable: bump the version"
    )


def decode_archive(text: str) -> bytes:
    """The bytes of a base64 archive from a request; a 422 naming the field when not base64."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationError(
            "archive_base64 is not valid base64",
            errors=[
                {"loc": ["body", "archive_base64"], "msg": "not base64", "type": "value_error"}
            ],
        ) from exc
