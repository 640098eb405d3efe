"""Durable workflows: the engine contract (:mod:`.engine`), its DBOS implementation
(:mod:`.dbos`), the built-in types (:mod:`.builtin`) and the gateway's entry point
(:func:`.service.open_engine`)."""

from __future__ import annotations

from somaagent.workflows.engine import (
    NO_RETRY,
    RunContext,
    StepPolicy,
    WorkflowEngine,
    WorkflowRegistry,
    WorkflowTypeSpec,
)

__all__ = [
    "NO_RETRY",
    "RunContext",
    "StepPolicy",
    "WorkflowEngine",
    "WorkflowRegistry",
    "WorkflowTypeSpec",
]
