"""Wire models of durable workflows, shared by the gateway's ``/v1/workflows`` routes and the SDK.

A run's ``status`` is one of :data:`RunStatus`; ``engine_status`` is the engine's own word for
it (DBOS: ``ENQUEUED``, ``PENDING``, ``SUCCESS``, ``ERROR``, ``CANCELLED``,
``MAX_RECOVERY_ATTEMPTS_EXCEEDED``), kept where it adds meaning.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
StepStatus = Literal["succeeded", "failed"]
RUN_STATUSES: tuple[RunStatus, ...] = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
"""Run ids chosen by callers: letters, digits, ``. _ : -``; at most 128 characters."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore")


class WorkflowRunCreate(_Request):
    """Start a run: its input and, optionally, its id (the same id returns the same run)."""

    input: dict[str, Any] = Field(default_factory=dict)
    id: str | None = Field(default=None, pattern=RUN_ID_PATTERN)


class WorkflowFork(_Request):
    """Fork a run: a new run that replays the first steps and runs again from ``from_step``."""

    from_step: int = Field(ge=1, description="a step_id from the run's step list")


class RunError(_Response):
    """Why a run (or a step) failed."""

    type: str = Field(description="the error's class, or its problem type")
    message: str
    step: str | None = None
    attempts: int | None = None


class WorkflowRun(_Response):
    """One run of a workflow type.

    Attributes:
        status: ``queued``, ``running``, ``succeeded``, ``failed`` or ``cancelled``.
        engine_status: the engine's own status.
        app_version: the SomaAgent version the run started on; a ``running`` run on another
            version than the gateway's is ``stranded``: this gateway will not resume it.
        cost_usd: what its model calls cost so far (``None`` when no step called a model).
    """

    id: str
    type: str
    status: RunStatus
    engine_status: str
    started_by: str | None = None
    input: dict[str, Any] | None = None
    output: Any = None
    error: RunError | None = None
    created_at: datetime
    started_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    cost_usd: float | None = None
    app_version: str | None = None
    executor_id: str | None = None
    stranded: bool = False
    forked_from: str | None = None


class WorkflowStep(_Response):
    """A finished step of a run (``step_id`` is what ``fork`` takes)."""

    step_id: int
    name: str
    status: StepStatus
    attempts: int = 1
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None
    output_summary: str | None = None
    cost_usd: float | None = None
    error: RunError | None = None


class WorkflowEvent(_Response):
    """One event of a run's durable event stream; ``seq`` counts from 0 with no gaps."""

    seq: int
    type: str = Field(description="run.started, run.step, run.progress, run.finished")
    data: dict[str, Any] = Field(default_factory=dict)
    at: datetime | None = None


class WorkflowType(_Response):
    """A registered workflow type and the JSON schema of its input."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=dict)
    available: bool = True
    note: str | None = Field(default=None, description="why a reserved type cannot run yet")
    has_result_file: bool = Field(default=False, description="runs have a JSONL result file")


__all__ = [
    "FINISHED",
    "RUN_ID_PATTERN",
    "RUN_STATUSES",
    "RunError",
    "RunStatus",
    "StepStatus",
    "WorkflowEvent",
    "WorkflowFork",
    "WorkflowRun",
    "WorkflowRunCreate",
    "WorkflowStep",
    "WorkflowType",
]


UPLOAD_ID_PATTERN = r"^up_[0-9a-f]{20}$"
"""An upload's id: ``up_`` and 20 hex digits."""


class UploadedFile(_Response):
    """One file of an upload: its name (no folders), size and SHA-256."""

    name: str
    size: int
    sha256: str


class WorkflowUpload(_Response):
    """Files stored for a later ``document_ingest`` run (``input.uploads: [id]``)."""

    id: str
    files: list[UploadedFile]
    bytes: int
    created_at: datetime
    expires_at: datetime | None = Field(
        default=None,
        description="when it may be removed (SOMA_WORKFLOW_UPLOAD_TTL_HOURS after created_at; "
        "never while a queued or running run names it); null: kept until deleted",
    )
