"""Chaos experiment specs: what to break, where, for how long, and what must stay true.

An :class:`Experiment` names one of seven fault types, the pods it targets (Kubernetes labels
agreed in ``deploy/README.md``), a duration, a steady-state :class:`Hypothesis` made of
Prometheus queries, and how to emulate the fault on one machine (:class:`LocalTarget`). Specs
are pydantic models with ``extra="forbid"``: an unknown field, a negative duration or a
percentage outside its range is an error that names the field.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from somaagent.errors import ConfigurationError
from somaagent.sre.chaos.duration import Duration
from somaagent.types import FaultPointName

__all__ = [
    "ChaosType",
    "CpuStress",
    "Experiment",
    "Fault",
    "Hypothesis",
    "IoDelay",
    "LocalTarget",
    "MemoryStress",
    "NetworkDelay",
    "NetworkLoss",
    "NetworkPartition",
    "PodFailure",
    "Probe",
    "Target",
    "load_experiment",
    "spec_error",
]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")

Percent = Annotated[float, Field(ge=0, le=100)]
"""A percentage, 0 to 100 inclusive."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChaosType(StrEnum):
    """The seven fault types."""

    POD_FAILURE = "pod_failure"
    NETWORK_DELAY = "network_delay"
    NETWORK_LOSS = "network_loss"
    NETWORK_PARTITION = "network_partition"
    CPU_STRESS = "cpu_stress"
    MEMORY_STRESS = "memory_stress"
    IO_DELAY = "io_delay"


class Target(_Spec):
    """The pods a fault hits: a namespace, a label selector and Chaos Mesh's selection mode.

    Attributes:
        namespace: the pods' namespace (also where the experiment object is created).
        labels: label selector; every label must match.
        mode: ``one``, ``all``, ``fixed`` (``value`` pods), ``fixed-percent`` or
            ``random-max-percent`` (``value`` percent).
        value: the count or percentage for the ``fixed*`` and ``random-max-percent`` modes.
        containers: container names to hit (default: the pod's first container).
    """

    namespace: str = "somaagent"
    labels: dict[str, str] = Field(min_length=1)
    mode: Literal["one", "all", "fixed", "fixed-percent", "random-max-percent"] = "one"
    value: str | None = None
    containers: list[str] = Field(default_factory=list)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if len(value) > 63 or not _DNS_LABEL.match(value):
            raise ValueError("a Kubernetes namespace: lower-case letters, digits and '-'")
        return value

    @model_validator(mode="after")
    def _value_for_mode(self) -> Target:
        if self.mode in ("fixed", "fixed-percent", "random-max-percent"):
            if self.value is None:
                raise ValueError(f"mode {self.mode!r} needs a value")
            if not self.value.isdigit() or int(self.value) <= 0:
                raise ValueError("value must be a whole number greater than 0")
            if self.mode != "fixed" and int(self.value) > 100:
                raise ValueError("value is a percentage and must be at most 100")
        return self


class PodFailure(_Spec):
    """The target pods stop serving (Chaos Mesh ``pod-failure``) for the duration."""

    type: Literal["pod_failure"] = "pod_failure"


class NetworkDelay(_Spec):
    """Packets to and from the target are delayed by ``latency`` ± ``jitter``."""

    type: Literal["network_delay"] = "network_delay"
    latency: Duration
    jitter: Duration = timedelta(0)
    correlation: Percent = 0

    @field_validator("latency")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be greater than 0")
        return value


class NetworkLoss(_Spec):
    """A share of the target's packets is dropped."""

    type: Literal["network_loss"] = "network_loss"
    loss: Annotated[float, Field(gt=0, le=100)]
    correlation: Percent = 0


class NetworkPartition(_Spec):
    """The target is cut off from ``external_targets`` (or from everything, locally)."""

    type: Literal["network_partition"] = "network_partition"
    direction: Literal["to", "from", "both"] = "both"
    external_targets: list[str] = Field(default_factory=list)
    peer: Target | None = None

    @model_validator(mode="after")
    def _peer_for_direction(self) -> NetworkPartition:
        # Chaos Mesh needs a peer selector to cut traffic *from* somewhere.
        if self.direction in ("from", "both") and self.peer is None and not self.external_targets:
            raise ValueError(f"direction {self.direction!r} needs a peer or external_targets")
        return self


class CpuStress(_Spec):
    """CPU workers each loading a core to ``load`` percent."""

    type: Literal["cpu_stress"] = "cpu_stress"
    load: Annotated[int, Field(gt=0, le=100)]
    workers: Annotated[int, Field(ge=1, le=64)] = 1


class MemoryStress(_Spec):
    """Workers that hold ``percent`` of the memory between them."""

    type: Literal["memory_stress"] = "memory_stress"
    percent: Annotated[float, Field(gt=0, le=100)]
    workers: Annotated[int, Field(ge=1, le=64)] = 1


class IoDelay(_Spec):
    """File-system calls on ``volume_path`` are delayed by ``delay``."""

    type: Literal["io_delay"] = "io_delay"
    delay: Duration
    volume_path: str = Field(min_length=1)
    path: str | None = None
    percent: Annotated[int, Field(gt=0, le=100)] = 100
    methods: list[str] = Field(default_factory=list)

    @field_validator("delay")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be greater than 0")
        return value


Fault = Annotated[
    PodFailure | NetworkDelay | NetworkLoss | NetworkPartition | CpuStress | MemoryStress | IoDelay,
    Field(discriminator="type"),
]


class Probe(_Spec):
    """One steady-state check: a PromQL query whose value must compare well with a threshold.

    Attributes:
        name: a short name for reports.
        query: an instant PromQL query returning one number (the first series is used).
        op: how the value must compare with ``threshold``.
        threshold: the bound.
        during: whether the check must also hold while the fault is on (``False`` for an
            effect the fault is expected to have, such as latency under a delay).
    """

    name: str = Field(min_length=1)
    query: str = Field(min_length=1)
    op: Literal["<", "<=", ">", ">=", "=="] = ">="
    threshold: float
    during: bool = True
    description: str = ""

    @field_validator("threshold")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    def holds(self, value: float) -> bool:
        """Whether ``value`` satisfies the probe."""
        return {
            "<": value < self.threshold,
            "<=": value <= self.threshold,
            ">": value > self.threshold,
            ">=": value >= self.threshold,
            "==": math.isclose(value, self.threshold, rel_tol=1e-9, abs_tol=1e-12),
        }[self.op]


class Hypothesis(_Spec):
    """The steady state: probes checked before, during and after the fault."""

    title: str = Field(min_length=1)
    probes: list[Probe] = Field(min_length=1)


class LocalTarget(_Spec):
    """Where the fault goes when the experiment runs on one machine.

    Two places, either or both:

    * ``point``: a fault point inside the gateway (``vector-store``, ``embedder``, ``model``),
      for a dependency that runs in the gateway's own process (the embedded Chroma, the local
      embedding and chat models); set through the gateway's ``/v1/admin/faults``.
    * ``listen`` and ``upstream``: a fault proxy for a networked dependency. Point the client
      of ``dependency`` (the gateway's upstream URL, its vector-store URL, ...) at ``listen``;
      the proxy forwards to ``upstream``.
    """

    dependency: str = Field(min_length=1)
    point: FaultPointName | None = None
    listen: str | None = None
    upstream: str | None = None

    @field_validator("listen", "upstream")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = _HOST_PORT.match(value)
        if match is None or not 0 < int(match.group("port")) < 65536:
            raise ValueError("host:port, such as 127.0.0.1:6333")
        return value

    @model_validator(mode="after")
    def _somewhere(self) -> LocalTarget:
        if (self.listen is None) != (self.upstream is None):
            raise ValueError("a fault proxy needs both `listen` and `upstream`")
        if self.point is None and self.listen is None:
            raise ValueError("needs a fault `point`, or a proxy's `listen` and `upstream`")
        return self


class Experiment(_Spec):
    """A chaos experiment (a preset, or a YAML file a user writes).

    Attributes:
        name: the experiment's name, also the Kubernetes object's (lower-case, ``-``).
        description: what it shows.
        service: the SLO service it threatens (``gateway``, ``slm``, ``memory``, ...).
        duration: how long the fault stays on.
        target: the pods the fault hits.
        fault: the fault, discriminated by ``type``.
        hypothesis: the steady state that must hold.
        local: where the fault goes on one machine (a gateway fault point or a proxy), for
            network, pod and I/O faults.
    """

    name: str
    description: str = ""
    service: str = Field(min_length=1)
    duration: Duration
    target: Target
    fault: Fault
    hypothesis: Hypothesis
    local: LocalTarget | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if len(value) > 63 or not _DNS_LABEL.match(value):
            raise ValueError("lower-case letters, digits and '-', at most 63 characters")
        return value

    @field_validator("duration")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be greater than 0")
        return value

    @model_validator(mode="after")
    def _local_for_network(self) -> Experiment:
        if self.fault.type not in ("cpu_stress", "memory_stress") and self.local is None:
            raise ValueError(
                f"a {self.fault.type} experiment needs `local` (a fault point or a proxy)"
            )
        return self

    @property
    def type(self) -> ChaosType:
        """The fault's type."""
        return ChaosType(self.fault.type)


def spec_error(exc: PydanticValidationError, *, source: str) -> ConfigurationError:
    """A :class:`ConfigurationError` naming every invalid field of a spec."""
    problems = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"] if not _is_union_tag(part))
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{location or '(top level)'}: {message}")
    return ConfigurationError(f"invalid {source}: " + "; ".join(problems))


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the discriminator's value in the location (fault.network_delay.latency).
    return isinstance(part, str) and part in {t.value for t in ChaosType}


def load_experiment(source: str | Path | dict[str, Any]) -> Experiment:
    """Parse an experiment from a YAML file, YAML text or a mapping.

    Raises:
        ConfigurationError: the file is missing or unreadable, or a field is invalid (the
            message names each one).
    """
    label = "experiment spec"
    data: Any
    if isinstance(source, dict):
        data = source
    else:
        text = str(source)
        if isinstance(source, Path) or (text.endswith((".yaml", ".yml")) and "\n" not in text):
            path = Path(text)
            label = f"experiment spec {path}"
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"invalid {label}: not YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"invalid {label}: expected a mapping of fields")
    try:
        return Experiment.model_validate(data)
    except PydanticValidationError as exc:
        raise spec_error(exc, source=label) from exc
