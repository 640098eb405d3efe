"""SomaAgent: one gateway for many language models.

This package's top level is the Python SDK: :class:`Client` and :class:`AsyncClient`, the
exceptions they raise and the models they return. Importing it loads no server code.

The exceptions load with the package; the models (pydantic, whose model building was most of
``import somaagent``'s time: ``bench/results/import_time.md``) and the clients (and httpx under
them) load when one of their names is first used, so a program that only catches SomaAgent's
errors pays for neither.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from somaagent._version import __version__
from somaagent.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    BusyError,
    ConfigurationError,
    ConflictError,
    EmbeddingError,
    FaultInjectionError,
    K6Error,
    KubernetesError,
    ManifestError,
    NotFoundError,
    OperationsError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PrometheusError,
    PrometheusQueryError,
    PrometheusResponseError,
    PrometheusUnreachableError,
    ProviderAuthenticationError,
    ProviderBadRequestError,
    ProviderConnectionError,
    ProviderError,
    ProviderFallbackError,
    ProviderOverloadedError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    SomaAgentError,
    UnsupportedMediaTypeError,
    UpstreamError,
    UpstreamTimeoutError,
    ValidationError,
    VectorStoreError,
    WorkflowStepError,
    WorkflowTypeUnavailableError,
)

if TYPE_CHECKING:
    from somaagent.sdk import (
        AsyncClient,
        AsyncMessageStream,
        Client,
        Identity,
        MessageStream,
        RetryEvent,
    )
    from somaagent.types import (
        ApiKeyInfo,
        Conversation,
        ConversationCreate,
        FaultCreate,
        FaultPoint,
        Message,
        MessageCreate,
        MessageExchange,
        ModelInfo,
        Page,
        Problem,
        PromptInvocation,
        Role,
        RouteCandidate,
        RouteDecision,
        RoutingPolicy,
        Scope,
        StreamEvent,
        Usage,
    )

_TYPES = frozenset(
    {
        "ApiKeyInfo",
        "Conversation",
        "ConversationCreate",
        "FaultCreate",
        "FaultPoint",
        "Message",
        "MessageCreate",
        "MessageExchange",
        "ModelInfo",
        "Page",
        "Problem",
        "PromptInvocation",
        "Role",
        "RouteCandidate",
        "RouteDecision",
        "RoutingPolicy",
        "Scope",
        "StreamEvent",
        "Usage",
    }
)
_SDK = frozenset(
    {"AsyncClient", "AsyncMessageStream", "Client", "Identity", "MessageStream", "RetryEvent"}
)

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "ApiKeyInfo",
    "AsyncClient",
    "AsyncMessageStream",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "BusyError",
    "Client",
    "ConfigurationError",
    "ConflictError",
    "Conversation",
    "ConversationCreate",
    "EmbeddingError",
    "FaultCreate",
    "FaultInjectionError",
    "FaultPoint",
    "Identity",
    "K6Error",
    "KubernetesError",
    "ManifestError",
    "Message",
    "MessageCreate",
    "MessageExchange",
    "MessageStream",
    "ModelInfo",
    "NotFoundError",
    "OperationsError",
    "Page",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "Problem",
    "PrometheusError",
    "PrometheusQueryError",
    "PrometheusResponseError",
    "PrometheusUnreachableError",
    "PromptInvocation",
    "ProviderAuthenticationError",
    "ProviderBadRequestError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderFallbackError",
    "ProviderOverloadedError",
    "ProviderRateLimitError",
    "ProviderResponseError",
    "ProviderTimeoutError",
    "RateLimitError",
    "RetryEvent",
    "Role",
    "RouteCandidate",
    "RouteDecision",
    "RoutingPolicy",
    "Scope",
    "ServerError",
    "ServiceUnavailableError",
    "SomaAgentError",
    "StreamEvent",
    "UnsupportedMediaTypeError",
    "UpstreamError",
    "UpstreamTimeoutError",
    "Usage",
    "ValidationError",
    "VectorStoreError",
    "WorkflowStepError",
    "WorkflowTypeUnavailableError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _SDK or name in _TYPES:
        module = "somaagent.sdk" if name in _SDK else "somaagent.types"
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # once: later lookups find it directly
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SDK, *_TYPES})
