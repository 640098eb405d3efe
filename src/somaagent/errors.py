"""The whole SomaAgent exception tree, shared by the SDK, the CLI and the server.

::

    SomaAgentError
    ├── ConfigurationError            misuse: a missing extra, key, model file or setting
    ├── APIError                      an HTTP problem (status_code, body, request_id, problem_type)
    │   ├── BadRequestError           400
    │   ├── AuthenticationError       401  bad or missing API key
    │   ├── PermissionDeniedError     403  wrong scope
    │   ├── NotFoundError             404  unknown, or another tenant's object
    │   ├── ConflictError             409
    │   │   └── BusyError                 409  passes by itself: retried after ``retry_after``
    │   ├── PayloadTooLargeError      413
    │   ├── UnsupportedMediaTypeError 415  a body in a content type the endpoint does not take
    │   ├── ValidationError           422  invalid input; ``errors`` names the fields
    │   │   └── WorkflowTypeUnavailableError  422  a reserved workflow type that cannot run yet
    │   ├── RateLimitError            429  ``retry_after`` seconds
    │   │   └── BudgetExceededError       429  the API key's monthly budget is spent
    │   └── ServerError               5xx
    │       ├── UpstreamError             502  a model provider failed or answered garbage
    │       ├── ServiceUnavailableError   503  a provider or dependency is unavailable
    │       │   └── VectorStoreError      a vector store failed or cannot be reached (``backend``)
    │       └── UpstreamTimeoutError      504  a provider did not answer in time
    ├── APIConnectionError            the SDK could not reach the gateway
    │   └── APITimeoutError           the SDK's request timed out
    ├── ProviderError                 raised by LLM adapters (``provider``, ``retryable``)
    │   ├── ProviderAuthenticationError
    │   ├── ProviderBadRequestError
    │   ├── ProviderRateLimitError    ``retry_after`` seconds
    │   ├── ProviderOverloadedError
    │   ├── ProviderTimeoutError
    │   ├── ProviderConnectionError
    │   ├── ProviderResponseError     a malformed answer, or a stream cut short
    │   ├── ProviderFallbackError     every model of a fallback chain failed (``attempts``)
    │   └── EmbeddingError            an embedding failed; ``items`` names the inputs at fault
    └── OperationsError               raised by the SRE tools in ``somaagent.sre``
        ├── PrometheusError           Prometheus could not answer (``url``, ``query``)
        │   ├── PrometheusUnreachableError  refused, DNS, TLS, timed out
        │   ├── PrometheusQueryError        it answered {"status": "error"} (``error_type``)
        │   └── PrometheusResponseError     not the API's JSON (a wrong URL, a proxy's page)
        ├── KubernetesError           the Kubernetes API refused or could not be reached
        ├── ManifestError             a Chaos Mesh manifest a cluster would refuse (``problems``)
        ├── FaultInjectionError       a fault could not be put in place or taken away
        └── K6Error                   k6 failed to run a script
    WorkflowStepError                 a workflow step failed after retries (``step``, ``attempts``)

The server raises :class:`APIError` subclasses and one handler turns them into
``application/problem+json``; the SDK turns problem+json back into the same classes
with :func:`error_for_status`. Provider errors are mapped to 502/503/504 at the gateway.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

PROBLEM_BASE = "urn:somaagent:problem:"


class SomaAgentError(Exception):
    """Base class of every error SomaAgent raises."""


class ConfigurationError(SomaAgentError):
    """A setting, extra, key or file is missing or wrong; the message says how to fix it."""


class APIError(SomaAgentError):
    """An HTTP problem, raised by the server and re-raised by the SDK.

    Attributes:
        status_code: the HTTP status.
        problem_type: the stable problem ``type`` (a URN under ``urn:somaagent:problem:``).
        body: the decoded problem+json body, when there is one.
        request_id: the gateway's request id, for support and logs.
        errors: per-field details for validation problems.
    """

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "api-error"
    title: ClassVar[str] = "API error"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: Any = None,
        request_id: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        problem_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code if status_code is not None else self.status
        self.body = body
        self.request_id = request_id
        self.errors = errors or []
        self.problem_type = problem_type or PROBLEM_BASE + self.slug
        self.headers = headers or {}

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status_code})"


class BadRequestError(APIError):
    status, slug, title = 400, "bad-request", "Bad request"


class AuthenticationError(APIError):
    status, slug, title = 401, "unauthenticated", "Authentication required"


class PermissionDeniedError(APIError):
    status, slug, title = 403, "forbidden", "Permission denied"


class NotFoundError(APIError):
    status, slug, title = 404, "not-found", "Not found"


class ConflictError(APIError):
    status, slug, title = 409, "conflict", "Conflict"


class BusyError(ConflictError):
    """A conflict that passes by itself: an earlier request with the same ``Idempotency-Key``
    still being answered, a run still stopping, a concurrent save. The one kind of 409 that
    trying again (after ``retry_after`` seconds) can cure, so the only one the SDK retries."""

    slug, title = "busy", "Busy: try again shortly"
    retry_after: float | None = 1.0


class PayloadTooLargeError(APIError):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaTypeError(APIError):
    """A request body in a content type the endpoint does not take."""

    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class ValidationError(APIError):
    """Invalid input; ``errors`` lists ``{"loc": [...], "msg": ..., "type": ...}`` per field."""

    status, slug, title = 422, "validation-error", "Invalid request"


class WorkflowTypeUnavailableError(ValidationError):
    """A registered workflow type that cannot run yet (``agent_run`` before agents exist)."""

    slug, title = "workflow-type-unavailable", "Workflow type not available yet"


class RateLimitError(APIError):
    """Too many requests; wait ``retry_after`` seconds before trying again."""

    status, slug, title = 429, "rate-limited", "Too many requests"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class BudgetExceededError(RateLimitError):
    """The API key's monthly budget is spent; ``retry_after`` is the time to the next month."""

    slug, title = "budget-exceeded", "Monthly budget exceeded"


class ServerError(APIError):
    status, slug, title = 500, "internal-error", "Internal server error"


class UpstreamError(ServerError):
    status, slug, title = 502, "upstream-error", "Upstream model failed"


class ServiceUnavailableError(ServerError):
    status, slug, title = 503, "unavailable", "Service unavailable"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class VectorStoreError(ServiceUnavailableError):
    """A vector-store back-end failed or cannot be reached (raised by ``somaagent.memory.stores``).

    Attributes:
        backend: the store's id (``chroma``, ``qdrant``, ``pinecone``, ``pgvector``, ...).
    """

    slug, title = "vector-store-unavailable", "Vector store unavailable"

    def __init__(self, message: str, *, backend: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.backend = backend


class UpstreamTimeoutError(ServerError):
    status, slug, title = 504, "upstream-timeout", "Upstream model timed out"


class APIConnectionError(SomaAgentError):
    """The SDK could not connect to the gateway (refused, DNS, TLS, reset)."""


class APITimeoutError(APIConnectionError):
    """The SDK's request to the gateway timed out."""


class ProviderError(SomaAgentError):
    """A model provider failed. Raised by the adapters in ``somaagent.llm``.

    Attributes:
        provider: the provider id (``openai``, ``anthropic``, ``local``).
        status_code: the provider's HTTP status, when there was one.
        body: the provider's error body, when there was one.
        retry_after: seconds the provider asked us to wait, when it said.
        retryable: whether trying again (or another model) may succeed.
    """

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status_code: int | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status_code = status_code
        self.body = body
        self.retry_after = retry_after

    def __str__(self) -> str:
        status = f" (HTTP {self.status_code})" if self.status_code else ""
        return f"{self.provider}: {self.message}{status}"


class ProviderAuthenticationError(ProviderError):
    """The provider refused our credentials."""


class ProviderBadRequestError(ProviderError):
    """The provider rejected the request itself (bad parameters, context too long)."""


class ProviderRateLimitError(ProviderError):
    retryable = True


class ProviderOverloadedError(ProviderError):
    retryable = True


class ProviderTimeoutError(ProviderError):
    retryable = True


class ProviderConnectionError(ProviderError):
    retryable = True


class ProviderResponseError(ProviderError):
    """The provider answered something we cannot use, or cut a stream short."""

    retryable = True


class ProviderFallbackError(ProviderError):
    """Every model of a fallback chain failed (or was skipped); one error that lists them all.

    Raised by ``somaagent.llm.fallback``; ``provider`` is ``"fallback"``.

    Attributes:
        attempts: one entry per try, in order (``somaagent.llm.fallback.Attempt``: the model,
            its provider, the outcome and the error); the message lists them too.
        errors: the provider errors raised, in order.
    """

    def __init__(
        self,
        message: str,
        *,
        attempts: Sequence[Any],
        errors: Sequence[ProviderError],
        provider: str = "fallback",
    ) -> None:
        super().__init__(message, provider=provider)
        self.attempts = tuple(attempts)
        self.errors = tuple(errors)

    def as_group(self) -> ExceptionGroup[ProviderError]:
        """The errors as an ``ExceptionGroup``, for ``except*`` handlers."""
        return ExceptionGroup(
            self.message, list(self.errors) or [ProviderError(self.message, provider=self.provider)]
        )


class EmbeddingError(ProviderError):
    """An embedding model failed to embed some inputs (raised by ``somaagent.memory.embeddings``).

    A failed item is always this error, never a silent zero vector in an index.

    Attributes:
        items: the indexes (in the caller's batch) of the inputs that failed; empty when the
            failure cannot be pinned on particular inputs.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        items: Sequence[int] = (),
        status_code: int | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            message, provider=provider, status_code=status_code, body=body, retry_after=retry_after
        )
        self.items = tuple(items)


class OperationsError(SomaAgentError):
    """An SRE tool failed: Prometheus, the Kubernetes API, k6, or a fault injector."""


class PrometheusError(OperationsError):
    """Prometheus could not answer a query.

    Attributes:
        url: the server asked.
        query: the PromQL sent, when there was one.
    """

    def __init__(self, message: str, *, url: str, query: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.query = query


class PrometheusUnreachableError(PrometheusError):
    """The server could not be reached (refused, DNS, TLS, timed out)."""


class PrometheusQueryError(PrometheusError):
    """Prometheus refused or failed the query; ``error_type`` is its ``errorType``."""

    def __init__(
        self, message: str, *, url: str, query: str | None = None, error_type: str | None = None
    ) -> None:
        super().__init__(message, url=url, query=query)
        self.error_type = error_type


class PrometheusResponseError(PrometheusError):
    """The answer was not the Prometheus API's JSON (a wrong URL, a proxy's page)."""


class KubernetesError(OperationsError):
    """The Kubernetes API refused a request or could not be reached.

    Attributes:
        status_code: the HTTP status (``None`` when the API was unreachable).
        reason: the API's ``reason`` (``NotFound``, ``AlreadyExists``, ``Invalid``, ...).
    """

    def __init__(self, message: str, *, status_code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.reason = reason


class ManifestError(OperationsError):
    """A manifest a cluster would refuse; ``problems`` has one line per invalid field."""

    def __init__(self, kind: str, problems: list[str]) -> None:
        super().__init__(f"invalid {kind}: " + "; ".join(problems))
        self.kind = kind
        self.problems = problems


class FaultInjectionError(OperationsError):
    """A fault could not be put in place or taken away.

    Attributes:
        target: what was to be faulted (a gateway fault point, a fault proxy's address).
    """

    def __init__(self, message: str, *, target: str) -> None:
        super().__init__(message)
        self.target = target


class K6Error(OperationsError):
    """k6 failed to run a script (a script error, a bad option, a crash)."""


class WorkflowStepError(SomaAgentError):
    """A workflow step failed after its retries; the run fails with it.

    Attributes:
        step: the step's name.
        attempts: how many times it ran.
        error_type: the class (or problem type) of the last failure.
        message: the last failure's message.
    """

    def __init__(self, step: str, attempts: int, error_type: str, message: str) -> None:
        super().__init__(f"step {step!r} failed after {attempts} attempt(s): {message}")
        self.step = step
        self.attempts = attempts
        self.error_type = error_type
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        # Workflow engines pickle errors into their database; keep them rebuildable.
        return (type(self), (self.step, self.attempts, self.error_type, self.message))


_BY_STATUS: dict[int, type[APIError]] = {
    cls.status: cls
    for cls in (
        BadRequestError,
        AuthenticationError,
        PermissionDeniedError,
        NotFoundError,
        ConflictError,
        PayloadTooLargeError,
        UnsupportedMediaTypeError,
        ValidationError,
        RateLimitError,
        UpstreamError,
        ServiceUnavailableError,
        UpstreamTimeoutError,
    )
}


_BY_TYPE: dict[tuple[int, str], type[APIError]] = {
    (BusyError.status, PROBLEM_BASE + BusyError.slug): BusyError,
    (BudgetExceededError.status, PROBLEM_BASE + BudgetExceededError.slug): BudgetExceededError,
    (
        WorkflowTypeUnavailableError.status,
        PROBLEM_BASE + WorkflowTypeUnavailableError.slug,
    ): WorkflowTypeUnavailableError,
}


def error_class_for_status(status_code: int) -> type[APIError]:
    """The :class:`APIError` subclass for an HTTP status (the SDK's one mapping)."""
    if status_code in _BY_STATUS:
        return _BY_STATUS[status_code]
    if status_code >= 500:
        return ServerError
    if status_code == 408:
        return APIError
    return BadRequestError if 400 <= status_code < 500 else APIError


def error_for_status(
    status_code: int,
    body: Any,
    *,
    request_id: str | None = None,
    retry_after: float | None = None,
    headers: dict[str, str] | None = None,
) -> APIError:
    """Build the exception for an error response, from its status and problem+json body."""
    cls = error_class_for_status(status_code)
    message = f"HTTP {status_code}"
    errors: list[dict[str, Any]] | None = None
    problem_type: str | None = None
    if isinstance(body, dict):
        message = str(body.get("detail") or body.get("title") or message)
        raw_errors = body.get("errors")
        errors = raw_errors if isinstance(raw_errors, list) else None
        problem_type = body.get("type") if isinstance(body.get("type"), str) else None
        request_id = request_id or body.get("request_id")
        # a more specific class for the same status, named by the problem type
        cls = _BY_TYPE.get((status_code, problem_type or ""), cls)
    elif isinstance(body, str) and body:
        message = body[:500]
    kwargs: dict[str, Any] = {
        "status_code": status_code,
        "body": body,
        "request_id": request_id,
        "errors": errors,
        "problem_type": problem_type,
        "headers": headers,
    }
    if issubclass(cls, RateLimitError | ServiceUnavailableError):
        return cls(message, retry_after=retry_after, **kwargs)
    return cls(message, **kwargs)


def api_error_for_provider(exc: ProviderError) -> APIError:
    """The HTTP problem a provider failure is answered with (502, 503, 504 or 400).

    A failed fallback chain maps like its last failure, with every attempt in the detail.
    """
    detail = f"model provider {exc.provider} failed: {exc.message}"
    if isinstance(exc, ProviderFallbackError):
        if not exc.errors:
            return ServiceUnavailableError(exc.message)
        last = api_error_for_provider(exc.errors[-1])
        last.message = exc.message
        return last
    if isinstance(exc, ProviderTimeoutError):
        return UpstreamTimeoutError(detail)
    if isinstance(exc, ProviderRateLimitError | ProviderOverloadedError | ProviderConnectionError):
        return ServiceUnavailableError(detail, retry_after=exc.retry_after)
    if isinstance(exc, ProviderBadRequestError):
        return BadRequestError(detail)
    return UpstreamError(detail)


def as_api_error(exc: BaseException) -> APIError:
    """Any exception as the :class:`APIError` a client is answered with: itself for an
    ``APIError``, mapped for a provider or configuration error, else a bare 500 (no detail of
    an unexpected failure leaks). The gateway renders it as problem+json; a domain uses it to
    report a failure of its own as the problem it will be."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, ProviderError):
        return api_error_for_provider(exc)
    if isinstance(exc, ConfigurationError):
        return ServiceUnavailableError(str(exc))
    return ServerError("internal error; quote the request id when reporting it")
