"""Validate Chaos Mesh manifests as a cluster would: the CRD's OpenAPI schema, made strict, and
the rules that live only in Chaos Mesh's admission webhook.

The CRD schemas (``chaos-mesh.org/v1alpha1``, from Chaos Mesh's ``config/crd/bases/`` or
``kubectl get crd podchaos.chaos-mesh.org -o yaml``) are read from a folder named by the
``SOMA_CHAOS_CRDS`` environment variable or passed in. They accept unknown fields (the API
server would prune them silently), so :class:`CrdSchemas` closes every object schema that lists
its properties: a misspelt field is an error here, as it is under ``fieldValidation=Strict``.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator, FormatChecker

from somaagent.errors import ConfigurationError, ManifestError
from somaagent.sre.chaos.duration import parse_duration

__all__ = [
    "CRDS_ENV",
    "GROUP",
    "VERSION",
    "CrdSchemas",
    "ManifestError",
    "metadata_errors",
    "webhook_errors",
]

GROUP = "chaos-mesh.org"
VERSION = "v1alpha1"
CRDS_ENV = "SOMA_CHAOS_CRDS"

_OBJECT_META = {
    "name",
    "namespace",
    "labels",
    "annotations",
    "generateName",
    "finalizers",
    "ownerReferences",
}
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_GO_DURATION = re.compile(r"^-?(\d+(\.\d*)?(ns|us|µs|ms|s|m|h))+$|^0$")
_SIZE = re.compile(r"^\d+(\.\d+)?\s*(B|KB|KIB|MB|MIB|GB|GIB|TB|TIB|K|M|G|T)?$", re.IGNORECASE)
_RATE = re.compile(r"^\d+(\.\d+)?\s*(bit|kbit|mbit|gbit|tbit|bps|kbps|mbps|gbps|tbps)$", re.I)
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


@dataclass(frozen=True)
class _Crd:
    kind: str
    plural: str
    validator: Draft7Validator


def _format_checker() -> FormatChecker:
    checker = FormatChecker()
    for name, (low, high) in _INT_RANGES.items():

        def check(value: object, low: int = low, high: int = high) -> bool:
            return not isinstance(value, int) or low <= value <= high

        checker.checks(name)(check)
    return checker


def _strict(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` on every object that lists properties."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: _strict(value) for key, value in schema.items() if key != "description"}
    if (
        "properties" in result
        and "additionalProperties" not in result
        and not result.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


class CrdSchemas:
    """The Chaos Mesh CRD schemas in a folder, by kind (``PodChaos``, ``NetworkChaos``, ...)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._crds: dict[str, _Crd] = {}
        checker = _format_checker()
        for path in sorted(directory.glob("*.y*ml")):
            for document in _documents(path):
                crd = _crd_from(document, checker)
                if crd is not None:
                    self._crds[crd.kind] = crd
        if not self._crds:
            raise ConfigurationError(
                f"no chaos-mesh.org CustomResourceDefinitions in {directory}; "
                "copy Chaos Mesh's config/crd/bases/*.yaml there"
            )

    @classmethod
    def locate(cls, directory: str | Path | None = None) -> CrdSchemas | None:
        """The schemas from ``directory``, else from ``$SOMA_CHAOS_CRDS``; ``None`` without.

        Raises:
            ConfigurationError: the folder was named but does not exist or holds no CRDs.
        """
        chosen = directory if directory is not None else os.environ.get(CRDS_ENV)
        if not chosen:
            return None
        path = Path(chosen).expanduser()
        if not path.is_dir():
            raise ConfigurationError(f"the Chaos Mesh CRD folder {path} does not exist")
        return cls(path)

    @property
    def kinds(self) -> list[str]:
        """The kinds whose schemas were found."""
        return sorted(self._crds)

    def plural(self, kind: str) -> str:
        """The resource's plural (``podchaos`` for ``PodChaos``)."""
        return self._crd(kind).plural

    def schema_errors(self, manifest: Mapping[str, Any]) -> list[str]:
        """What the strict schema finds wrong, one line per field, sorted."""
        kind = str(manifest.get("kind", ""))
        crd = self._crd(kind)
        errors = []
        for error in crd.validator.iter_errors(dict(manifest)):
            path = ".".join(str(part) for part in error.absolute_path)
            if error.validator == "additionalProperties" and error.validator_value is False:
                known = set(error.schema.get("properties", {}))
                for extra in sorted(set(error.instance) - known):
                    errors.append(f"{_join(path, extra)}: unknown field")
                continue
            errors.append(f"{path or '(top level)'}: {error.message}")
        return sorted(set(errors))

    def _crd(self, kind: str) -> _Crd:
        try:
            return self._crds[kind]
        except KeyError:
            raise ConfigurationError(
                f"no CRD schema for kind {kind!r} in {self.directory} "
                f"(have {', '.join(self.kinds)})"
            ) from None


def _documents(path: Path) -> Iterator[Any]:
    try:
        yield from yaml.safe_load_all(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"cannot read the CRD file {path}: {exc}") from exc


def _crd_from(document: Any, checker: FormatChecker) -> _Crd | None:
    if not isinstance(document, dict) or document.get("kind") != "CustomResourceDefinition":
        return None
    spec = document.get("spec", {})
    if spec.get("group") != GROUP:
        return None
    for version in spec.get("versions", []):
        if version.get("name") == VERSION:
            schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
            return _Crd(
                kind=spec["names"]["kind"],
                plural=spec["names"]["plural"],
                validator=Draft7Validator(schema, format_checker=checker),
            )
    return None


def _join(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


# -- rules outside the schema -----------------------------------------------------------------


def metadata_errors(manifest: Mapping[str, Any]) -> list[str]:
    """The API server's checks on ``apiVersion``, ``kind`` and ``metadata``."""
    errors: list[str] = []
    if manifest.get("apiVersion") != f"{GROUP}/{VERSION}":
        errors.append(f"apiVersion: must be {GROUP}/{VERSION}")
    metadata = manifest.get("metadata")
    if not isinstance(metadata, Mapping):
        return [*errors, "metadata: required"]
    errors += [f"metadata.{key}: unknown field" for key in sorted(set(metadata) - _OBJECT_META)]
    name = metadata.get("name")
    if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        errors.append("metadata.name: a lower-case DNS subdomain of at most 253 characters")
    namespace = metadata.get("namespace")
    if namespace is not None and (
        not isinstance(namespace, str) or len(namespace) > 63 or not _DNS_LABEL.match(namespace)
    ):
        errors.append("metadata.namespace: a lower-case DNS label of at most 63 characters")
    for key, value in dict(metadata.get("labels") or {}).items():
        if not _label_key_ok(str(key)):
            errors.append(f"metadata.labels.{key}: not a valid label name")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            errors.append(f"metadata.labels.{key}: not a valid label value")
    return errors


def _label_key_ok(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_LABEL_NAME.match(name))


def webhook_errors(manifest: Mapping[str, Any]) -> list[str]:
    """The rules Chaos Mesh's admission webhook enforces and the CRD schema does not."""
    spec = manifest.get("spec")
    if not isinstance(spec, Mapping):
        return []
    errors = _mode_errors(spec, "spec")
    duration = spec.get("duration")
    if duration is not None and not _duration_ok(duration):
        errors.append(f"spec.duration: {duration!r} is not a non-negative Go duration")
    kind = manifest.get("kind")
    if kind == "PodChaos":
        errors += _pod_errors(spec)
    elif kind == "NetworkChaos":
        errors += _network_errors(spec)
    elif kind == "StressChaos":
        errors += _stress_errors(spec)
    elif kind == "IOChaos":
        errors += _io_errors(spec)
    return errors


def _mode_errors(spec: Mapping[str, Any], where: str) -> list[str]:
    mode, value = spec.get("mode"), spec.get("value")
    if mode not in ("fixed", "fixed-percent", "random-max-percent"):
        return []
    if value in (None, ""):
        return [f"{where}.value: required with mode {mode}"]
    try:
        number = int(str(value))
    except ValueError:
        return [f"{where}.value: {value!r} is not a whole number"]
    if mode == "fixed" and number <= 0:
        return [f"{where}.value: must be greater than 0 with mode fixed"]
    if mode != "fixed" and not 0 < number <= 100:
        return [f"{where}.value: {number} is invalid, must be in (0,100] with mode {mode}"]
    return []


def _duration_ok(value: object) -> bool:
    if not isinstance(value, str) or not _GO_DURATION.match(value):
        return False
    try:
        parse_duration(value)
    except ValueError:
        return False
    return True


def _percent_ok(value: object) -> bool:
    try:
        number = float(str(value))
    except ValueError:
        return False
    return 0 <= number <= 100


def _pod_errors(spec: Mapping[str, Any]) -> list[str]:
    errors = []
    action = spec.get("action")
    if action == "pod-failure" and not spec.get("duration"):
        errors.append("spec.duration: required for the pod-failure action")
    if action == "container-kill" and not spec.get("containerNames"):
        errors.append("spec.containerNames: required for the container-kill action")
    return errors


def _network_errors(spec: Mapping[str, Any]) -> list[str]:
    errors: list[str] = []
    action = spec.get("action")
    for needed in ("delay", "loss", "bandwidth", "duplicate", "corrupt"):
        if action == needed and not isinstance(spec.get(needed), Mapping):
            errors.append(f"spec.{needed}: required for the {needed} action")
    delay = spec.get("delay")
    if isinstance(delay, Mapping):
        for field in ("latency", "jitter"):
            if field in delay and not _duration_ok(delay[field]):
                errors.append(f"spec.delay.{field}: {delay[field]!r} is not a Go duration")
    for block, field in (("delay", "correlation"), ("loss", "loss"), ("loss", "correlation")):
        payload = spec.get(block)
        if isinstance(payload, Mapping) and field in payload and not _percent_ok(payload[field]):
            errors.append(f"spec.{block}.{field}: {payload[field]!r} is not a percentage")
    bandwidth = spec.get("bandwidth")
    if isinstance(bandwidth, Mapping) and not _RATE.match(str(bandwidth.get("rate", ""))):
        errors.append(f"spec.bandwidth.rate: {bandwidth.get('rate')!r} is not a rate like 1mbps")
    if (
        spec.get("direction") in ("from", "both")
        and action == "partition"
        and not spec.get("target")
    ):
        errors.append(f"spec.target: required for direction {spec.get('direction')}")
    target = spec.get("target")
    if isinstance(target, Mapping):
        errors += _mode_errors(target, "spec.target")
    return errors


def _stress_errors(spec: Mapping[str, Any]) -> list[str]:
    stressors = spec.get("stressors")
    stressors = stressors if isinstance(stressors, Mapping) else {}
    if (
        not stressors.get("cpu")
        and not stressors.get("memory")
        and not spec.get("stressngStressors")
    ):
        return ["spec.stressors: at least one stressor (cpu or memory) is required"]
    errors = []
    for name in ("cpu", "memory"):
        stressor = stressors.get(name)
        if isinstance(stressor, Mapping) and int(stressor.get("workers", 0) or 0) < 1:
            errors.append(f"spec.stressors.{name}.workers: must be at least 1")
    memory = stressors.get("memory")
    if isinstance(memory, Mapping) and memory.get("size") is not None:
        size = str(memory["size"]).strip()
        if size.endswith("%"):
            if not _percent_ok(size[:-1]) or float(size[:-1]) == 0:
                errors.append(f"spec.stressors.memory.size: {size!r} must be in (0%,100%]")
        elif not _SIZE.match(size):
            errors.append(f"spec.stressors.memory.size: {size!r} is not a size like 256MB or 70%")
    return errors


def _io_errors(spec: Mapping[str, Any]) -> list[str]:
    errors = []
    action = spec.get("action")
    if action == "latency":
        delay = spec.get("delay")
        if not delay:
            errors.append("spec.delay: required for the latency action")
        elif not _duration_ok(delay):
            errors.append(f"spec.delay: {delay!r} is not a Go duration")
    if action == "fault" and not spec.get("errno"):
        errors.append("spec.errno: required (and not 0) for the fault action")
    percent = spec.get("percent")
    if percent is not None and not (isinstance(percent, int) and 0 <= percent <= 100):
        errors.append("spec.percent: must be in [0,100]")
    return errors
