"""The lean route: an :class:`APIRoute` that skips FastAPI's per-request dependency solving on
well-formed JSON requests (the OpenAI-compatible chat route, the gateway's hot path, uses it)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException

from somaagent.gateway.auth import current_state, require_principal

log = logging.getLogger("somaagent.gateway")


def json_response(payload: dict[str, Any], headers: dict[str, str]) -> Response:
    """What ``JSONResponse(payload, headers=headers)`` sends (the same bytes for these
    payloads: strings, ints, None, lists and dicts), encoded with orjson."""
    return Response(orjson.dumps(payload), media_type="application/json", headers=headers)


_Handler = Callable[[Request], Coroutine[Any, Any, Response]]
# The dependencies the lean path knows how to run: each takes the request and nothing else.
_LEAN_DEPENDENCIES: tuple[Callable[[Request], Coroutine[Any, Any, Any]], ...] = (
    require_principal,
    current_state,
)


class LeanJSONRoute(APIRoute):
    """An :class:`APIRoute` that skips FastAPI's dependency solving on well-formed requests.

    It applies to an endpoint whose parameters are one JSON body model plus any of the
    gateway's request-only dependencies (``CurrentPrincipal``, ``State``), that returns a
    :class:`Response`, and whose route and router declare no other dependencies. Then, for a
    request with ``Content-Type: application/json`` and no dependency overrides on the app,
    the handler reads the body, validates it with the model's ``model_validate_json``
    (pydantic-core's own JSON parser, no intermediate ``dict``), runs the dependencies as plain
    calls in their declared order, and awaits the endpoint.

    Everything else is handed to the handler FastAPI built for the route, on the body already
    read: another content type, a body that does not parse or validate, a failure reading it.
    So the errors, their order (a malformed JSON body is refused before authentication,
    invalid fields after it) and their problem+json bodies are FastAPI's, word for word, and
    only valid requests take the short path. An endpoint of another shape is served by
    FastAPI's handler alone. (Dependencies added with ``app.include_router(...,
    dependencies=...)`` are not visible to the route: include this router without them.)
    """

    def get_route_handler(self) -> _Handler:
        """The lean handler, falling back to FastAPI's; see the class docstring."""
        standard = super().get_route_handler()
        plan = _lean_plan(self)
        if plan is None:
            log.debug("route %s %s takes FastAPI's path: unsupported shape", self.methods, self)
            return standard
        body_name, model, dependencies = plan
        endpoint: Callable[..., Coroutine[Any, Any, Response]] = self.endpoint

        async def handler(request: Request) -> Response:
            if request.app.dependency_overrides or not _is_json(
                request.headers.get("content-type")
            ):
                return await standard(request)
            try:
                raw = await request.body()
            except HTTPException:
                raise  # the body limit's 413, as on FastAPI's path
            except Exception:
                # FastAPI's handler turns a failed read into its 400 (the body is gone, so it
                # fails too, the same way)
                return await standard(request)
            try:
                body = model.model_validate_json(raw)
            except PydanticValidationError:
                return await standard(request)  # its 422, with FastAPI's locations
            values: dict[str, Any] = {body_name: body}
            for name, dependency in dependencies:
                values[name] = await dependency(request)
            return await endpoint(**values)

        return handler


def _lean_plan(
    route: APIRoute,
) -> tuple[str, type[BaseModel], list[tuple[str, Callable[[Request], Any]]]] | None:
    """(body parameter, its model, [(parameter, dependency)]) if the lean path can serve the
    route, else None."""
    dependant = route.dependant
    if (
        dependant.path_params
        or dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or len(dependant.body_params) != 1
        or dependant.request_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
        or route.response_model is not None
    ):
        return None
    body = dependant.body_params[0]
    model = body.field_info.annotation
    if (
        not isinstance(model, type)
        or not issubclass(model, BaseModel)
        or getattr(body.field_info, "embed", False)
    ):
        return None
    dependencies: list[tuple[str, Callable[[Request], Any]]] = []
    for sub in dependant.dependencies:
        if (
            sub.name is None
            or sub.call not in _LEAN_DEPENDENCIES
            or sub.dependencies
            or sub.path_params
            or sub.query_params
            or sub.header_params
            or sub.cookie_params
            or sub.body_params
        ):
            return None  # not a dependency of the request alone
        dependencies.append((sub.name, sub.call))
    return body.name, model, dependencies


def _is_json(content_type: str | None) -> bool:
    """Whether FastAPI would read the body as JSON because it is ``application/json``."""
    if content_type is None:
        return False
    return content_type.partition(";")[0].strip().lower() == "application/json"
