"""Render an :class:`~somaagent.sre.chaos.spec.Experiment` as a Chaos Mesh manifest, and check it.

``render_manifest`` returns the object a cluster would store, after checking it against the
strict CRD schema (when the schemas are at hand), the API server's metadata rules and Chaos
Mesh's admission-webhook rules. The result is a plain mapping, ready for ``yaml.safe_dump`` or
the Kubernetes API.
"""

from __future__ import annotations

from typing import Any

from somaagent.sre.chaos.crds import (
    GROUP,
    VERSION,
    CrdSchemas,
    ManifestError,
    metadata_errors,
    webhook_errors,
)
from somaagent.sre.chaos.duration import format_duration
from somaagent.sre.chaos.spec import (
    ChaosType,
    CpuStress,
    Experiment,
    IoDelay,
    MemoryStress,
    NetworkDelay,
    NetworkLoss,
    NetworkPartition,
    Target,
)

__all__ = [
    "KINDS",
    "MANAGED_BY",
    "PAUSE_ANNOTATION",
    "PLURALS",
    "check_manifest",
    "render_manifest",
]

API_VERSION = f"{GROUP}/{VERSION}"
PAUSE_ANNOTATION = "experiment.chaos-mesh.org/pause"
MANAGED_BY = "somaagent"
EXPERIMENT_LABEL = "somaagent.io/experiment"

KINDS: dict[ChaosType, str] = {
    ChaosType.POD_FAILURE: "PodChaos",
    ChaosType.NETWORK_DELAY: "NetworkChaos",
    ChaosType.NETWORK_LOSS: "NetworkChaos",
    ChaosType.NETWORK_PARTITION: "NetworkChaos",
    ChaosType.CPU_STRESS: "StressChaos",
    ChaosType.MEMORY_STRESS: "StressChaos",
    ChaosType.IO_DELAY: "IOChaos",
}
"""The Chaos Mesh kind of each fault type."""

PLURALS: dict[str, str] = {
    "PodChaos": "podchaos",
    "NetworkChaos": "networkchaos",
    "StressChaos": "stresschaos",
    "IOChaos": "iochaos",
}
"""The REST resource (plural) of each kind."""


def _percent(value: float) -> str:
    return f"{value:g}"


def _selection(target: Target) -> dict[str, Any]:
    selected: dict[str, Any] = {
        "mode": target.mode,
        "selector": {"namespaces": [target.namespace], "labelSelectors": dict(target.labels)},
    }
    if target.value is not None:
        selected["value"] = target.value
    return selected


def _fault_spec(experiment: Experiment) -> dict[str, Any]:
    fault = experiment.fault
    spec: dict[str, Any] = _selection(experiment.target)
    if isinstance(fault, NetworkDelay):
        spec |= {
            "action": "delay",
            "direction": "to",
            "delay": {
                "latency": format_duration(fault.latency),
                "jitter": format_duration(fault.jitter),
                "correlation": _percent(fault.correlation),
            },
        }
    elif isinstance(fault, NetworkLoss):
        spec |= {
            "action": "loss",
            "direction": "to",
            "loss": {"loss": _percent(fault.loss), "correlation": _percent(fault.correlation)},
        }
    elif isinstance(fault, NetworkPartition):
        spec |= {"action": "partition", "direction": fault.direction}
        if fault.peer is not None:
            spec["target"] = _selection(fault.peer)
        if fault.external_targets:
            spec["externalTargets"] = list(fault.external_targets)
    elif isinstance(fault, CpuStress):
        spec["stressors"] = {"cpu": {"workers": fault.workers, "load": fault.load}}
    elif isinstance(fault, MemoryStress):
        spec["stressors"] = {
            "memory": {"workers": fault.workers, "size": f"{_percent(fault.percent)}%"}
        }
    elif isinstance(fault, IoDelay):
        spec |= {
            "action": "latency",
            "volumePath": fault.volume_path,
            "delay": format_duration(fault.delay),
            "percent": fault.percent,
        }
        if fault.path:
            spec["path"] = fault.path
        if fault.methods:
            spec["methods"] = list(fault.methods)
    else:  # pod failure
        spec["action"] = "pod-failure"
    if experiment.target.containers:
        spec["containerNames"] = list(experiment.target.containers)
    spec["duration"] = format_duration(experiment.duration)
    return spec


def render_manifest(
    experiment: Experiment,
    *,
    schemas: CrdSchemas | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """The Chaos Mesh object for ``experiment``, checked before it is returned.

    Args:
        experiment: the experiment.
        schemas: the CRD schemas to check against; without them only the metadata and webhook
            rules are checked.
        name: the object's name (default: the experiment's).

    Raises:
        ManifestError: the object breaks the schema or a webhook rule (each field named).
    """
    kind = KINDS[experiment.type]
    manifest: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {
            "name": name or experiment.name,
            "namespace": experiment.target.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": MANAGED_BY,
                "app.kubernetes.io/part-of": "somaagent",
                EXPERIMENT_LABEL: experiment.name,
            },
            "annotations": {"somaagent.io/description": experiment.description}
            if experiment.description
            else {},
        },
        "spec": _fault_spec(experiment),
    }
    if not manifest["metadata"]["annotations"]:
        del manifest["metadata"]["annotations"]
    check_manifest(manifest, schemas=schemas)
    return manifest


def check_manifest(manifest: dict[str, Any], *, schemas: CrdSchemas | None = None) -> None:
    """Check any Chaos Mesh manifest the way a cluster with Chaos Mesh would.

    Raises:
        ManifestError: one problem per invalid field.
    """
    problems = metadata_errors(manifest)
    if schemas is not None:
        problems += schemas.schema_errors(manifest)
    problems += webhook_errors(manifest)
    if problems:
        raise ManifestError(str(manifest.get("kind", "manifest")), sorted(set(problems)))
