"""DBOS records to SomaAgent's wire models: statuses, runs, steps, ids and list cursors.

DBOS workflow ids are global, so a run's engine id is ``<tenant>/<run id>``: two tenants may use
the same run id, and a run id of another tenant simply names no run of yours (404).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from somaagent.errors import ValidationError, WorkflowStepError
from somaagent.types.workflows import RunError, RunStatus, WorkflowRun, WorkflowStep

WORKFLOW_PREFIX = "somaagent."
"""DBOS workflow names are ``somaagent.<type>``."""
EVENTS = "events"
"""The DBOS stream key of a run's events."""
INTERNAL_STEP_PREFIX = "DBOS."
"""Steps DBOS records for its own calls (stream writes, status reads); not shown."""

TO_ENGINE: dict[str, list[str]] = {
    "queued": ["ENQUEUED", "DELAYED"],
    "running": ["PENDING"],
    "succeeded": ["SUCCESS"],
    "failed": ["ERROR", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"],
    "cancelled": ["CANCELLED"],
}
FROM_ENGINE: dict[str, RunStatus] = {e: s for s, es in TO_ENGINE.items() for e in es}  # type: ignore[misc]


def engine_id(tenant: str, run_id: str) -> str:
    return f"{tenant}/{run_id}"


def public_id(tenant: str, workflow_id: str) -> str:
    prefix = tenant + "/"
    return workflow_id[len(prefix) :] if workflow_id.startswith(prefix) else workflow_id


def type_of(name: str) -> str:
    return name[len(WORKFLOW_PREFIX) :] if name.startswith(WORKFLOW_PREFIX) else name


def when(epoch_ms: int | None) -> datetime | None:
    return None if epoch_ms is None else datetime.fromtimestamp(epoch_ms / 1000, UTC)


def error_of(exc: BaseException | None) -> RunError | None:
    if exc is None:
        return None
    if isinstance(exc, WorkflowStepError):
        return RunError(
            type=exc.error_type, message=exc.message, step=exc.step, attempts=exc.attempts
        )
    problem = getattr(exc, "problem_type", None)
    return RunError(type=problem or type(exc).__name__, message=str(exc) or type(exc).__name__)


def run_of(
    status: Any, tenant: str, app_version: str, *, cost_usd: float | None = None
) -> WorkflowRun:
    """A DBOS ``WorkflowStatus`` as a :class:`WorkflowRun`."""
    engine_status = str(status.status)
    mapped = FROM_ENGINE.get(engine_status, "running")
    output = status.output
    if isinstance(output, dict) and "output" in output:
        cost_usd = output.get("cost_usd", cost_usd)
        output = output["output"]
    attributes = status.attributes or {}
    inputs = status.input
    run_input: dict[str, Any] | None = None
    if inputs is not None:
        args = inputs.get("args") if isinstance(inputs, dict) else getattr(inputs, "args", None)
        if args and len(args) >= 2 and isinstance(args[1], dict):
            run_input = args[1]
    return WorkflowRun(
        id=public_id(tenant, status.workflow_id),
        type=type_of(status.name),
        status=mapped,
        engine_status=engine_status,
        started_by=attributes.get("started_by"),
        input=run_input,
        output=output,
        error=error_of(status.error),
        created_at=when(status.created_at) or datetime.now(UTC),
        started_at=when(status.dequeued_at),
        updated_at=when(status.updated_at),
        finished_at=when(status.completed_at)
        if mapped in ("succeeded", "failed", "cancelled")
        else None,
        cost_usd=cost_usd,
        app_version=status.app_version,
        executor_id=status.executor_id,
        stranded=engine_status == "PENDING" and status.app_version not in (None, app_version),
        forked_from=public_id(tenant, status.forked_from) if status.forked_from else None,
    )


def step_of(info: Any) -> WorkflowStep | None:
    """A DBOS ``StepInfo`` as a :class:`WorkflowStep`; ``None`` for DBOS's own steps."""
    name = str(info["function_name"])
    if name.startswith(INTERNAL_STEP_PREFIX):
        return None
    started, finished = info.get("started_at_epoch_ms"), info.get("completed_at_epoch_ms")
    duration = None if started is None or finished is None else float(finished - started)
    error = info.get("error")
    output = info.get("output")
    if error is not None:
        attempts = error.attempts if isinstance(error, WorkflowStepError) else 1
        return WorkflowStep(
            step_id=int(info["function_id"]),
            name=name,
            status="failed",
            attempts=attempts,
            started_at=when(started),
            finished_at=when(finished),
            duration_ms=duration,
            error=error_of(error),
        )
    envelope = output if isinstance(output, dict) else {}
    return WorkflowStep(
        step_id=int(info["function_id"]),
        name=name,
        status="succeeded",
        attempts=int(envelope.get("attempts", 1)),
        started_at=when(started),
        finished_at=when(finished),
        duration_ms=duration if duration is not None else envelope.get("duration_ms"),
        output_summary=envelope.get("summary"),
        cost_usd=envelope.get("cost_usd"),
    )


def encode_cursor(created_ms: int, seen: list[str]) -> str:
    """A cursor after the row created at ``created_ms``; ``seen``: ids already listed then."""
    raw = json.dumps([created_ms, seen]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, set[str]]:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        created_ms, seen = int(value[0]), {str(s) for s in value[1]}
    except (binascii.Error, ValueError, TypeError, IndexError, UnicodeDecodeError):
        raise ValidationError(
            "invalid pagination cursor; pass back the next_cursor of a previous page",
            errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor", "type": "value_error"}],
        ) from None
    return created_ms, seen


def ms_bound(created_ms: int) -> str:
    """The ISO time DBOS reads back as exactly ``created_ms`` (it floors ``ts * 1000``)."""
    return datetime.fromtimestamp((created_ms + 0.5) / 1000, UTC).isoformat()
