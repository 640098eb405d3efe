"""Start, stop, pause and watch Chaos Mesh experiments through the Kubernetes API.

:class:`ChaosMeshClient` wraps the official ``kubernetes`` client's ``CustomObjectsApi`` on the
``chaos-mesh.org/v1alpha1`` resources. Objects are created with ``fieldValidation=Strict`` so
a cluster refuses unknown fields too; pausing sets Chaos Mesh's
``experiment.chaos-mesh.org/pause`` annotation with a JSON merge patch, resuming removes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel

from somaagent.errors import ConfigurationError, KubernetesError
from somaagent.sre.chaos.crds import GROUP, VERSION
from somaagent.sre.chaos.manifest import MANAGED_BY, PAUSE_ANNOTATION, PLURALS

__all__ = ["ChaosMeshClient", "ExperimentStatus", "KubernetesError"]

K8S_EXTRA = "pip install 'somaagent[sre]'"
ExperimentPhase = Literal["injecting", "running", "paused", "finished", "unknown"]


class ExperimentStatus(BaseModel):
    """An experiment object as Chaos Mesh reports it."""

    kind: str
    name: str
    namespace: str
    phase: ExperimentPhase
    paused: bool
    conditions: dict[str, bool]
    created_at: str | None = None
    desired_phase: str | None = None

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> ExperimentStatus:
        """Read the status out of a Chaos Mesh object."""
        metadata = obj.get("metadata", {})
        status = obj.get("status") or {}
        conditions = {
            str(c.get("type")): str(c.get("status")) == "True"
            for c in status.get("conditions") or []
        }
        paused = (metadata.get("annotations") or {}).get(PAUSE_ANNOTATION) == "true"
        desired = (status.get("experiment") or {}).get("desiredPhase")
        phase: ExperimentPhase
        if paused or conditions.get("Paused"):
            phase = "paused"
        elif desired == "Stop" and conditions.get("AllRecovered"):
            phase = "finished"
        elif conditions.get("AllInjected"):
            phase = "running"
        elif status:
            phase = "injecting"
        else:
            phase = "unknown"
        return cls(
            kind=str(obj.get("kind", "")),
            name=str(metadata.get("name", "")),
            namespace=str(metadata.get("namespace", "")),
            phase=phase,
            paused=paused or conditions.get("Paused", False),
            conditions=conditions,
            created_at=metadata.get("creationTimestamp"),
            desired_phase=desired,
        )


def _plural(kind: str) -> str:
    try:
        return PLURALS[kind]
    except KeyError:
        raise ConfigurationError(
            f"unknown Chaos Mesh kind {kind!r}; expected one of {', '.join(PLURALS)}"
        ) from None


class ChaosMeshClient:
    """Chaos Mesh experiments over the Kubernetes API.

    Args:
        api: a ``kubernetes.client.CustomObjectsApi``; see :meth:`connect` to build one.
        timeout: seconds per API request.
    """

    def __init__(self, api: Any, *, timeout: float = 15.0) -> None:
        self._api = api
        self._timeout = timeout

    @classmethod
    def connect(
        cls,
        *,
        host: str | None = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        timeout: float = 15.0,
    ) -> ChaosMeshClient:
        """A client from ``host`` (an API URL, no auth), a kubeconfig, or the in-cluster config.

        Raises:
            ConfigurationError: the ``kubernetes`` package is missing, or no configuration
                was found.
        """
        try:
            from kubernetes import client, config
            from kubernetes.config.config_exception import ConfigException
        except ModuleNotFoundError as exc:
            raise ConfigurationError(
                f"the Kubernetes client is not installed: {K8S_EXTRA}"
            ) from exc
        if host is not None:
            configuration = client.Configuration(host=host.rstrip("/"))
            return cls(client.CustomObjectsApi(client.ApiClient(configuration)), timeout=timeout)
        api_client: Any
        try:
            # The kubernetes package's config loaders carry no annotations.
            api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context
            )
        except (ConfigException, OSError) as exc:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            except ConfigException:
                raise ConfigurationError(
                    "no Kubernetes configuration: set KUBECONFIG, pass --kubeconfig, "
                    f"or run inside a cluster ({exc})"
                ) from exc
            api_client = client.ApiClient()
        return cls(client.CustomObjectsApi(api_client), timeout=timeout)

    def close(self) -> None:
        """Close the underlying API client's connection pool."""
        api_client = getattr(self._api, "api_client", None)
        if api_client is not None:
            api_client.close()

    def __enter__(self) -> ChaosMeshClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            from kubernetes.client.exceptions import ApiException
            from urllib3.exceptions import HTTPError as TransportError
        except ModuleNotFoundError as exc:  # pragma: no cover - connect() checked already
            raise ConfigurationError(f"the Kubernetes client is missing: {K8S_EXTRA}") from exc
        try:
            return getattr(self._api, method)(
                GROUP, VERSION, *args, _request_timeout=self._timeout, **kwargs
            )
        except ApiException as exc:
            raise _api_error(exc) from exc
        except (TransportError, OSError) as exc:
            raise KubernetesError(f"the Kubernetes API is unreachable: {exc}") from exc

    def create(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create the experiment object (the fault starts when Chaos Mesh sees it)."""
        namespace = manifest["metadata"]["namespace"]
        created = self._call(
            "create_namespaced_custom_object",
            namespace,
            _plural(str(manifest["kind"])),
            dict(manifest),
            field_validation="Strict",
            _headers={"Content-Type": "application/json"},
        )
        return dict(created)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        """The object as stored."""
        return dict(self._call("get_namespaced_custom_object", namespace, _plural(kind), name))

    def status(self, kind: str, name: str, namespace: str) -> ExperimentStatus:
        """The experiment's phase and conditions."""
        return ExperimentStatus.from_object(self.get(kind, name, namespace))

    def delete(self, kind: str, name: str, namespace: str) -> bool:
        """Delete the object, which stops and recovers the fault; False if it was not there."""
        try:
            self._call("delete_namespaced_custom_object", namespace, _plural(kind), name)
        except KubernetesError as exc:
            if exc.status_code == 404:
                return False
            raise
        return True

    def pause(self, kind: str, name: str, namespace: str) -> ExperimentStatus:
        """Pause the experiment (Chaos Mesh recovers the fault until it is resumed)."""
        return self._annotate(kind, name, namespace, "true")

    def resume(self, kind: str, name: str, namespace: str) -> ExperimentStatus:
        """Resume a paused experiment."""
        return self._annotate(kind, name, namespace, None)

    def _annotate(
        self, kind: str, name: str, namespace: str, value: str | None
    ) -> ExperimentStatus:
        patch = {"metadata": {"annotations": {PAUSE_ANNOTATION: value}}}
        patched = self._call(
            "patch_namespaced_custom_object",
            namespace,
            _plural(kind),
            name,
            patch,
            _content_type="application/merge-patch+json",
        )
        return ExperimentStatus.from_object(patched)

    def list(self, namespace: str, *, managed_only: bool = True) -> list[ExperimentStatus]:
        """Experiments in ``namespace`` (by default only those SomaAgent created)."""
        selector = f"app.kubernetes.io/managed-by={MANAGED_BY}" if managed_only else None
        found: list[ExperimentStatus] = []
        for kind, plural in PLURALS.items():
            listing = self._call(
                "list_namespaced_custom_object", namespace, plural, label_selector=selector
            )
            for item in listing.get("items", []):
                found.append(ExperimentStatus.from_object({"kind": kind, **item}))
        return found


def _api_error(exc: Any) -> KubernetesError:
    status = getattr(exc, "status", None)
    reason, message = str(getattr(exc, "reason", "") or ""), ""
    body = getattr(exc, "body", None)
    if body:
        try:
            decoded = json.loads(body)
        except (TypeError, ValueError):
            message = str(body)[:300]
        else:
            if isinstance(decoded, dict):
                message = str(decoded.get("message", ""))
                reason = str(decoded.get("reason", reason))
    text = message or reason or "no details"
    return KubernetesError(
        f"Kubernetes API: {text} (HTTP {status})", status_code=status, reason=reason
    )
