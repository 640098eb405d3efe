"""Chaos experiments: specs and presets, Chaos Mesh manifests checked against the CRDs, the
Kubernetes API, and local fault injection (a fault proxy, CPU and memory stress).

May import ``somaagent.errors`` and, for Kubernetes, the optional ``kubernetes`` package (the
``sre`` extra); nothing from the gateway.
"""

from __future__ import annotations

from somaagent.sre.chaos.crds import CrdSchemas, ManifestError
from somaagent.sre.chaos.hypothesis import PhaseCheck, ProbeResult, PrometheusError, PrometheusHTTP
from somaagent.sre.chaos.manifest import check_manifest, render_manifest
from somaagent.sre.chaos.presets import PRESETS, get_preset, preset_names
from somaagent.sre.chaos.proxy import FaultProxy, ProxyFaults, ThreadedProxy
from somaagent.sre.chaos.runner import RunReport, run_experiment
from somaagent.sre.chaos.spec import ChaosType, Experiment, Hypothesis, Probe, load_experiment

__all__ = [
    "PRESETS",
    "ChaosType",
    "CrdSchemas",
    "Experiment",
    "FaultProxy",
    "Hypothesis",
    "ManifestError",
    "PhaseCheck",
    "Probe",
    "ProbeResult",
    "PrometheusError",
    "PrometheusHTTP",
    "ProxyFaults",
    "RunReport",
    "ThreadedProxy",
    "check_manifest",
    "get_preset",
    "load_experiment",
    "preset_names",
    "render_manifest",
    "run_experiment",
]
