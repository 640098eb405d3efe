"""``client.route()``: which model the router would choose, and why (``POST /v1/route``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

from somaagent.sdk._base import APICall
from somaagent.sdk._calls import drop_none, model_parser
from somaagent.types import RouteDecision, RoutingPolicy

__all__ = ["PolicyLike", "policy_body", "route_call"]

PolicyLike: TypeAlias = RoutingPolicy | Mapping[str, Any]
"""A routing policy: a :class:`~somaagent.types.RoutingPolicy`, or a mapping of its fields."""


def policy_body(policy: PolicyLike | None) -> dict[str, Any] | None:
    """A routing policy as sent in a request body.

    A :class:`~somaagent.types.RoutingPolicy` was validated when it was made; a mapping is
    sent as it is, for the gateway to validate (an unknown field is a
    :class:`~somaagent.errors.ValidationError` naming ``body.policy.<field>``).

    Raises:
        TypeError: ``policy`` is neither.
    """
    if policy is None:
        return None
    if isinstance(policy, RoutingPolicy):
        return policy.as_body()
    if isinstance(policy, Mapping):
        return dict(policy)
    raise TypeError(
        f"policy must be a RoutingPolicy or a mapping of its fields, not {type(policy).__name__}"
    )


def route_call(
    prompt: str | None,
    *,
    messages: Sequence[Mapping[str, Any]] | None,
    policy: PolicyLike | None,
    max_tokens: int | None,
    stream: bool,
) -> APICall[RouteDecision]:
    """``POST /v1/route``: explain the router's choice for a prompt or a conversation."""
    body = drop_none(
        prompt=prompt,
        messages=[dict(m) for m in messages] if messages is not None else None,
        policy=policy_body(policy),
        max_tokens=max_tokens,
    )
    if stream:
        body["stream"] = True
    return APICall("POST", "/v1/route", model_parser(RouteDecision), json=body)
