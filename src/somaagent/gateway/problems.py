"""Errors → ``application/problem+json`` (RFC 9457), in one place.

Routes never build HTTP errors by hand: they raise :class:`somaagent.errors.APIError`
subclasses (or let provider errors through), and the handlers here render them. Request
validation errors name each field; anything unexpected is a 500 with a request id and no
traceback in the body.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from somaagent import errors
from somaagent.errors import APIError, ProviderError

log = logging.getLogger("somaagent.gateway")

PROBLEM_JSON = "application/problem+json"


def problem_body(exc: APIError, request_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": exc.problem_type,
        "title": exc.title,
        "status": exc.status_code,
        "detail": exc.message,
        "request_id": request_id,
        # OpenAI's clients print a body's ``message``; repeating the detail there makes
        # gateway errors readable from unmodified OpenAI SDKs.
        "message": exc.message,
    }
    if exc.errors:
        body["errors"] = exc.errors
    return body


# The mapping itself lives with the error tree, so a domain can report a failure as the
# problem it will be; these are its names on the gateway's side.
api_error_from_provider = errors.api_error_for_provider
to_api_error = errors.as_api_error


def retry_after_header(exc: APIError) -> dict[str, str]:
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is None:
        return {}
    return {"Retry-After": str(max(1, math.ceil(retry_after)))}


def problem_response(exc: APIError, request: Request) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    headers = {**exc.headers, **retry_after_header(exc)}
    return JSONResponse(
        problem_body(exc, request_id),
        status_code=exc.status_code,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _loc(loc: tuple[int | str, ...]) -> list[int | str]:
    return list(loc)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(to_api_error(exc), request)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = [
            {"loc": _loc(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()
        ]
        fields = ", ".join(".".join(str(p) for p in d["loc"]) for d in details)
        error = errors.ValidationError(f"invalid request: {fields}", errors=details)
        return problem_response(error, request)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        cls = errors.error_class_for_status(exc.status_code)
        error = cls(str(exc.detail), status_code=exc.status_code)
        return problem_response(error, request)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception(
            "unhandled error", extra={"request_id": getattr(request.state, "request_id", None)}
        )
        return problem_response(to_api_error(exc), request)

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(ProviderError, on_api_error)
    app.add_exception_handler(errors.ConfigurationError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
