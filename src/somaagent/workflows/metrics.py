"""Workflow metrics, registered in the gateway's Prometheus registry.

* ``soma_workflow_runs_started_total`` by type: runs accepted (a repeated id is not counted);
* ``soma_workflow_runs_finished_total`` by type and status (``succeeded``, ``failed``,
  ``cancelled``), counted by the process where the run ended;
* ``soma_workflow_step_duration_seconds`` by type and step kind (the step name without its
  numbers: ``batch-3/10`` is ``batch``), for steps that ran (a replayed step is not timed);
* ``soma_workflow_queue_depth``: runs waiting in the queue, refreshed every few seconds;
* ``soma_workflow_pending_other_versions``: runs left running by another SomaAgent version,
  which this gateway will not resume (refreshed with the queue depth).

The default SLO ``workflow-success`` (``somaagent/sre/slo/defaults.yaml``) counts ``failed``
among finished runs.
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
FINISHED_STATUSES = ("succeeded", "failed", "cancelled")
_NUMBERS = re.compile(r"[-_/ ]*\d+(/\d+)?")


def step_kind(name: str) -> str:
    """A step name without its numbers, to keep the label's values few."""
    return _NUMBERS.sub("", name) or "step"


class WorkflowMetrics:
    """The workflow instruments, in ``registry`` (a fresh one when ``None``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.started = Counter(
            "soma_workflow_runs_started",
            "Workflow runs started, by type.",
            ["workflow_type"],
            registry=self.registry,
        )
        self.finished = Counter(
            "soma_workflow_runs_finished",
            "Workflow runs finished, by type and status.",
            ["workflow_type", "status"],
            registry=self.registry,
        )
        self.step_duration = Histogram(
            "soma_workflow_step_duration_seconds",
            "Duration of workflow steps that ran (replayed steps are not timed).",
            ["workflow_type", "step"],
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "soma_workflow_queue_depth",
            "Workflow runs waiting in the queue.",
            registry=self.registry,
        )
        self.pending_other_versions = Gauge(
            "soma_workflow_pending_other_versions",
            "Runs left running by another SomaAgent version; this gateway will not resume them.",
            registry=self.registry,
        )
        self._seen: set[str] = set()

    def type_seen(self, workflow_type: str) -> None:
        # The failure series exists from the first run on, so rate() sees a first failure.
        if workflow_type not in self._seen:
            self._seen.add(workflow_type)
            self.started.labels(workflow_type)
            for status in FINISHED_STATUSES:
                self.finished.labels(workflow_type, status)

    def run_started(self, workflow_type: str) -> None:
        self.type_seen(workflow_type)
        self.started.labels(workflow_type).inc()

    def run_finished(self, workflow_type: str, status: str) -> None:
        self.type_seen(workflow_type)
        self.finished.labels(workflow_type, status).inc()

    def step_ran(self, workflow_type: str, step: str, seconds: float) -> None:
        self.step_duration.labels(workflow_type, step_kind(step)).observe(seconds)
