"""A local stand-in for a Kubernetes API server with Chaos Mesh installed, for tests.

It speaks the real custom-objects REST paths
(``/apis/chaos-mesh.org/v1alpha1/namespaces/{ns}/{plural}[/{name}]``): create (POST), get,
list (with an equality ``labelSelector``), replace (PUT), merge and JSON patches, and delete,
answering failures with ``Status`` objects as the API server does (404 ``NotFound``, 409
``AlreadyExists``, 422 ``Invalid``, 400 ``BadRequest`` for unknown fields under
``fieldValidation=Strict``, 415 for patch types custom resources do not support).

Objects are validated against the CRD's ``openAPIV3Schema`` read from the Chaos Mesh CRD files.
A tiny controller fills ``status`` as Chaos Mesh does: injected on create, recovered and
``Paused`` while the ``experiment.chaos-mesh.org/pause`` annotation is ``"true"``.
"""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

__all__ = ["FakeKubernetes"]

GROUP, VERSION = "chaos-mesh.org", "v1alpha1"
PAUSE = "experiment.chaos-mesh.org/pause"


@dataclass
class _Crd:
    kind: str
    plural: str
    schema: dict[str, Any]


def _status(code: int, reason: str, message: str, **details: Any) -> JSONResponse:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure" if code >= 400 else "Success",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }
    return JSONResponse(body, status_code=code)


def _unknown_fields(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Fields the structural schema does not declare (the API server would prune them)."""
    found: list[str] = []
    if isinstance(value, dict) and schema.get("type") == "object":
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if properties is not None and key in properties:
                found += _unknown_fields(item, properties[key], where)
            elif isinstance(extra, dict):
                found += _unknown_fields(item, extra, where)
            elif properties is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
                found.append(where)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += _unknown_fields(item, schema["items"], f"{path}[{index}]")
    return found


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _json_patch(target: Any, operations: list[dict[str, Any]]) -> Any:
    """RFC 6902 JSON patch: add, replace and remove are enough for these tests."""
    document = copy.deepcopy(target)
    for operation in operations:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in operation["path"].split("/")[1:]]
        parent = document
        for part in parts[:-1]:
            parent = parent.setdefault(part, {})
        if operation["op"] in ("add", "replace"):
            parent[parts[-1]] = operation["value"]
        elif operation["op"] == "remove":
            del parent[parts[-1]]
        else:
            raise ValueError(f"unsupported op {operation['op']}")
    return document


@dataclass
class FakeKubernetes:
    """The API server's state and its ASGI app.

    Attributes:
        crd_dir: the folder with Chaos Mesh's CRD YAML files.
        objects: stored objects by ``(plural, namespace, name)``.
        requests: ``(method, path, content-type)`` of each request, in order.
    """

    crd_dir: Path
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    _crds: dict[str, _Crd] = field(default_factory=dict)
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    def __post_init__(self) -> None:
        for path in sorted(self.crd_dir.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    names = doc["spec"]["names"]
                    schema = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
                    self._crds[names["plural"]] = _Crd(names["kind"], names["plural"], schema)

    @property
    def app(self) -> Starlette:
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{{plural}}"
        return Starlette(
            routes=[
                Route(base, self._collection, methods=["GET", "POST"]),
                Route(base + "/{name}", self._item, methods=["GET", "PUT", "PATCH", "DELETE"]),
            ]
        )

    # -- helpers -------------------------------------------------------------------------------

    def _crd(self, request: Request) -> _Crd | None:
        self.requests.append(
            (request.method, request.url.path, request.headers.get("content-type", ""))
        )
        return self._crds.get(request.path_params["plural"])

    def _invalid(self, crd: _Crd, obj: dict[str, Any], strict: bool) -> JSONResponse | None:
        name = obj.get("metadata", {}).get("name", "")
        if strict:
            unknown = _unknown_fields(obj, crd.schema, "")
            if unknown:
                message = "; ".join(f'unknown field "{u}"' for u in unknown)
                return _status(400, "BadRequest", f"strict decoding error: {message}")
        errors = sorted(
            Draft7Validator(crd.schema).iter_errors(obj), key=lambda e: list(e.absolute_path)
        )
        if errors:
            causes = [
                {"field": ".".join(map(str, e.absolute_path)), "message": e.message} for e in errors
            ]
            message = f'{crd.kind}.{GROUP} "{name}" is invalid: ' + ", ".join(
                f"{c['field']}: {c['message']}" for c in causes
            )
            return _status(422, "Invalid", message, name=name, kind=crd.kind, causes=causes)
        return None

    def _reconcile(self, obj: dict[str, Any]) -> None:
        """What Chaos Mesh's controller would write into ``status``."""
        paused = obj["metadata"].get("annotations", {}).get(PAUSE) == "true"
        conditions = {
            "Selected": True,
            "AllInjected": not paused,
            "AllRecovered": paused,
            "Paused": paused,
        }
        obj["status"] = {
            "conditions": [
                {"type": kind, "status": "True" if value else "False"}
                for kind, value in conditions.items()
            ],
            "experiment": {"desiredPhase": "Stop" if paused else "Run"},
        }

    def _stamp(self, obj: dict[str, Any]) -> None:
        obj["metadata"]["resourceVersion"] = str(next(self._versions))
        obj["metadata"]["generation"] = obj["metadata"].get("generation", 0) + 1

    @staticmethod
    async def _body(request: Request) -> Any:
        try:
            return json.loads(await request.body())
        except ValueError:
            return None

    # -- routes --------------------------------------------------------------------------------

    async def _collection(self, request: Request) -> JSONResponse:
        crd = self._crd(request)
        namespace = request.path_params["namespace"]
        if crd is None:
            return _status(404, "NotFound", "the server could not find the requested resource")
        if request.method == "GET":
            wanted = dict(
                pair.split("=", 1)
                for pair in request.query_params.get("labelSelector", "").split(",")
                if "=" in pair
            )
            items = [
                obj
                for (plural, ns, _), obj in sorted(self.objects.items())
                if plural == crd.plural
                and ns == namespace
                and all(obj["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
            ]
            kind_list = f"{crd.kind}List"
            return JSONResponse(
                {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind_list, "items": items}
            )
        content_type = request.headers.get("content-type", "application/json").split(";")[0]
        if content_type not in ("application/json", "application/yaml"):
            return _status(415, "UnsupportedMediaType", f"unsupported media type {content_type}")
        obj = await self._body(request)
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            return _status(400, "BadRequest", "the body is not an object with metadata")
        metadata = obj["metadata"]
        metadata.setdefault("namespace", namespace)
        if metadata["namespace"] != namespace:
            return _status(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the "
                "request",
            )
        strict = request.query_params.get("fieldValidation") == "Strict"
        if (problem := self._invalid(crd, obj, strict)) is not None:
            return problem
        key = (crd.plural, namespace, str(metadata.get("name")))
        if key in self.objects:
            return _status(
                409,
                "AlreadyExists",
                f'{crd.plural}.{GROUP} "{key[2]}" already exists',
                name=key[2],
                group=GROUP,
                kind=crd.plural,
            )
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._stamp(obj)
        self._reconcile(obj)
        self.objects[key] = obj
        return JSONResponse(obj, status_code=201)

    async def _item(self, request: Request) -> JSONResponse:
        crd = self._crd(request)
        if crd is None:
            return _status(404, "NotFound", "the server could not find the requested resource")
        key = (crd.plural, request.path_params["namespace"], request.path_params["name"])
        current = self.objects.get(key)
        if current is None:
            return _status(
                404,
                "NotFound",
                f'{crd.plural}.{GROUP} "{key[2]}" not found',
                name=key[2],
                group=GROUP,
                kind=crd.plural,
            )
        if request.method == "GET":
            return JSONResponse(current)
        if request.method == "DELETE":
            del self.objects[key]
            return JSONResponse(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {"name": key[2], "group": GROUP, "kind": crd.plural},
                }
            )
        body = await self._body(request)
        if request.method == "PUT":
            updated = body
        else:
            content_type = request.headers.get("content-type", "").split(";")[0]
            if content_type == "application/merge-patch+json":
                updated = _merge_patch(current, body)
            elif content_type == "application/json-patch+json" and isinstance(body, list):
                updated = _json_patch(current, body)
            else:
                return _status(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown "
                    f"format - accepted media types include: application/json-patch+json, "
                    f"application/merge-patch+json, application/apply-patch+yaml ({content_type})",
                )
        if not isinstance(updated, dict):
            return _status(400, "BadRequest", "the patched object is not an object")
        updated.pop("status", None)
        for fixed in ("uid", "creationTimestamp", "name", "namespace"):
            updated.setdefault("metadata", {})[fixed] = current["metadata"][fixed]
        strict = request.query_params.get("fieldValidation") == "Strict"
        if (problem := self._invalid(crd, updated, strict)) is not None:
            return problem
        updated["metadata"]["generation"] = current["metadata"]["generation"]
        self._stamp(updated)
        self._reconcile(updated)
        self.objects[key] = updated
        return JSONResponse(updated)
