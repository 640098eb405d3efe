"""The workflow engine contract, in SomaAgent's own terms, and the registry of workflow types.

A workflow *type* is a name, a pydantic input model and an ``async`` function of a
:class:`RunContext` and that input. Everything the function does through ``ctx.step`` is
checkpointed: after a crash the run resumes, finished steps return their recorded result and
are not run again. A step that raises is retried per its :class:`StepPolicy`, then fails the
run with :class:`~somaagent.errors.WorkflowStepError`.

:class:`WorkflowEngine` is what the gateway talks to; :mod:`somaagent.workflows.dbos` implements
it on DBOS Transact. Every call is scoped by tenant: another tenant's run is a 404.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from somaagent import types
from somaagent.errors import ValidationError, WorkflowStepError, WorkflowTypeUnavailableError
from somaagent.types.workflows import (
    RunStatus,
    WorkflowEvent,
    WorkflowRun,
    WorkflowStep,
    WorkflowType,
)

T = TypeVar("T")
InputT = TypeVar("InputT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class StepPolicy:
    """How a step is retried: ``max_attempts`` tries, waiting ``interval_s`` then ``backoff``
    times longer each time, for errors ``retry_on`` accepts (default: every error)."""

    max_attempts: int = 3
    interval_s: float = 0.5
    backoff: float = 2.0
    retry_on: Callable[[BaseException], bool] | None = None

    def retryable(self, exc: BaseException) -> bool:
        return self.retry_on(exc) if self.retry_on is not None else True


NO_RETRY = StepPolicy(max_attempts=1)
DEFAULT_POLICY = StepPolicy()


class RunContext(abc.ABC):
    """What a workflow function sees: its run, its tenant, checkpointed steps and events."""

    run_id: str
    tenant: str
    started_by: str | None
    services: Mapping[str, Any]
    """The services the gateway wired (``memory``, ``chat``); see :mod:`.ports`."""

    @abc.abstractmethod
    async def step(
        self,
        name: str,
        fn: Callable[[], Awaitable[T]],
        *,
        policy: StepPolicy = DEFAULT_POLICY,
        summary: Callable[[T], str] | None = None,
        cost: Callable[[T], float | None] | None = None,
    ) -> T:
        """Run ``fn`` once as the checkpointed step ``name``; its result must be JSON-like."""

    @abc.abstractmethod
    async def steps(
        self,
        name: Callable[[int], str],
        fns: Sequence[Callable[[], Awaitable[T]]],
        *,
        policy: StepPolicy = DEFAULT_POLICY,
        summary: Callable[[T], str] | None = None,
        cost: Callable[[T], float | None] | None = None,
    ) -> list[T | WorkflowStepError]:
        """Run ``fns`` concurrently, each its own checkpointed step, results in order; a step
        that failed after its retries is its :class:`WorkflowStepError` (the run goes on)."""

    @abc.abstractmethod
    def pool(
        self,
        name: Callable[[int], str],
        fns: Sequence[Callable[[], Awaitable[T]]],
        *,
        concurrency: int,
        policy: StepPolicy = DEFAULT_POLICY,
        summary: Callable[[T], str] | None = None,
        cost: Callable[[T], float | None] | None = None,
    ) -> AsyncIterator[tuple[int, T | WorkflowStepError]]:
        """Run ``fns`` as a sliding pool, at most ``concurrency`` at once (the next starts as
        soon as one ends), each its own checkpointed step keyed by its index; yields
        ``(index, result)`` in index order as the finished prefix grows, so what the caller
        does between yields (events, totals) happens in the same order on every replay. A step
        that failed after its retries is its :class:`WorkflowStepError`."""

    @abc.abstractmethod
    async def emit(self, type: str, **data: Any) -> None:
        """Append an event to the run's durable event stream (written once, even on replay)."""


WorkflowFn = Callable[[RunContext, Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class WorkflowTypeSpec(Generic[InputT]):
    """A registered workflow type."""

    name: str
    input_model: type[InputT]
    run: WorkflowFn
    description: str = ""
    unavailable: str | None = None
    """Set for a reserved type: why it cannot run yet (starting it is a 422 saying so)."""
    result_steps: str | None = None
    """Steps named with this prefix make the run's JSONL result file, one line each."""
    accept: Callable[[InputT, Mapping[str, Any], str], Awaitable[None]] | None = None
    """Checks of a valid input against this gateway (its services, the operator's settings
    and the tenant's stored objects: ``accept(input, services, tenant)``), made before a run
    is accepted; raises :class:`ValidationError` naming the field
    under ``input``."""

    def info(self) -> WorkflowType:
        return WorkflowType(
            name=self.name,
            description=self.description,
            input_schema=self.input_model.model_json_schema(),
            available=self.unavailable is None,
            note=self.unavailable,
            has_result_file=self.result_steps is not None,
        )

    def validate_input(self, data: Mapping[str, Any]) -> InputT:
        """The input as the type's model; a 422 naming each bad field under ``input``."""
        if self.unavailable is not None:
            raise WorkflowTypeUnavailableError(
                f"workflow type {self.name!r} is reserved: {self.unavailable}",
                errors=[{"loc": ["path", "type"], "msg": self.unavailable, "type": "reserved"}],
            )
        try:
            return self.input_model.model_validate(dict(data))
        except PydanticValidationError as exc:
            details = [
                {"loc": ["body", "input", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in exc.errors()
            ]
            fields = ", ".join(".".join(str(p) for p in d["loc"][1:]) for d in details)
            raise ValidationError(f"invalid {self.name} input: {fields}", errors=details) from exc


@dataclass(slots=True)
class WorkflowRegistry:
    """Workflow types by name."""

    types: dict[str, WorkflowTypeSpec[Any]] = field(default_factory=dict)

    def register(self, spec: WorkflowTypeSpec[Any]) -> WorkflowTypeSpec[Any]:
        if spec.name in self.types and self.types[spec.name] is not spec:
            raise ValueError(f"workflow type {spec.name!r} is already registered")
        self.types[spec.name] = spec
        return spec

    def get(self, name: str) -> WorkflowTypeSpec[Any]:
        """The type, or a 422 naming ``type`` and listing the registered ones."""
        spec = self.types.get(name)
        if spec is None:
            known = ", ".join(sorted(self.types)) or "none"
            raise ValidationError(
                f"unknown workflow type {name!r}; registered types: {known}",
                errors=[{"loc": ["path", "type"], "msg": "unknown type", "type": "value_error"}],
            )
        return spec

    def infos(self) -> list[WorkflowType]:
        return [self.types[name].info() for name in sorted(self.types)]


class WorkflowEngine(abc.ABC):
    """Durable runs of registered workflow types, scoped by tenant."""

    registry: WorkflowRegistry

    @abc.abstractmethod
    async def start(
        self,
        tenant: str,
        type: str,
        input: Mapping[str, Any],
        *,
        id: str | None = None,
        started_by: str | None = None,
    ) -> WorkflowRun:
        """Start a run (queued). Idempotent on ``id``: the same id returns the same run; the
        same id with another type or input is a 409."""

    @abc.abstractmethod
    async def get(self, tenant: str, run_id: str) -> WorkflowRun:
        """One run; 404 when unknown or another tenant's."""

    @abc.abstractmethod
    async def list(
        self,
        tenant: str,
        *,
        type: str | None = None,
        status: RunStatus | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> types.Page[WorkflowRun]:
        """The tenant's runs, newest first, one page at a time."""

    @abc.abstractmethod
    async def steps(self, tenant: str, run_id: str) -> builtins.list[WorkflowStep]:
        """A run's finished steps, in order."""

    @abc.abstractmethod
    async def cancel(self, tenant: str, run_id: str) -> WorkflowRun:
        """Cancel a queued or running run; 409 when it has finished."""

    @abc.abstractmethod
    async def resume(self, tenant: str, run_id: str) -> WorkflowRun:
        """Resume a cancelled or failed run from its last finished step; 409 when it succeeded."""

    @abc.abstractmethod
    async def fork(self, tenant: str, run_id: str, from_step: int) -> WorkflowRun:
        """A new run with the same input that reuses steps before ``from_step`` and runs the
        rest again."""

    @abc.abstractmethod
    def events(
        self, tenant: str, run_id: str, *, after_seq: int = -1, follow: bool = True
    ) -> AsyncIterator[WorkflowEvent]:
        """The run's events after ``after_seq``; with ``follow``, until the run finishes."""
