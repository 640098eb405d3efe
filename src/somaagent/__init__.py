"""SomaAgent: one gateway for many language models.

This package's top level is the Python SDK: :class:`Client` and :class:`AsyncClient`, the
exceptions they raise and the models they return. Importing it loads no server code.

The exceptions and models load with the package; the clients (and httpx under them, whose own
import is most of the SDK's start-up time) load when one of their names is first used, so a
program that only catches SomaAgent's errors or validates its models does not pay for them.
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

if TYPE_CHECKING:
    from somaagent.sdk import (
        AsyncClient,
        AsyncMessageStream,
        Client,
        Identity,
        MessageStream,
        RetryEvent,
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
    if name in _SDK:
        value = getattr(importlib.import_module("somaagent.sdk"), name)
        globals()[name] = value  # once: later lookups find it directly
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SDK})
