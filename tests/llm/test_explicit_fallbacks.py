"""Explicit fallbacks are honoured, or the policy is a 422 saying why (issue 14: with
``models`` naming one model and ``fallbacks: ["ok"]``, the fallback was silently dropped)."""

from __future__ import annotations

from datetime import date

import pytest

from somaagent.errors import ValidationError
from somaagent.llm.base import ChatMessage
from somaagent.llm.registry import ModelRegistry
from somaagent.llm.router import Router

PROMPT: list[ChatMessage] = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def router() -> Router:
    return Router(ModelRegistry.load(), today=lambda: date(2026, 11, 24))


def test_a_fallback_outside_models_or_providers_is_honoured(router: Router) -> None:
    decision = router.decide(PROMPT, {"models": ["gpt-4o-mini"], "fallbacks": ["gpt-4o"]})
    assert [s.name for s in decision.chain] == ["gpt-4o-mini", "gpt-4o"]
    decision = router.decide(
        PROMPT, {"providers": ["openai"], "fallbacks": ["claude-haiku-4-5", "gpt-4o"]}
    )
    assert decision.spec.provider == "openai"
    assert decision.fallbacks[0].name == "claude-haiku-4-5"


def test_a_fallback_that_cannot_take_the_request_is_a_422_naming_it(router: Router) -> None:
    with pytest.raises(ValidationError) as caught:
        router.decide(
            PROMPT,
            {"models": ["gpt-4o-mini"], "fallbacks": ["gpt-4o", "claude-haiku-4-5"]},
            available=lambda spec: spec.provider == "openai",
        )
    error = caught.value.errors[0]
    assert error["loc"] == ["body", "policy", "fallbacks", 1]
    assert "claude-haiku-4-5" in error["msg"] and "not configured" in error["msg"]


def test_the_configured_chain_still_follows_the_policy(router: Router) -> None:
    # not named by the caller: the router's own chain keeps to models/providers, silently
    decision = router.decide(PROMPT, {"providers": ["openai"]})
    assert all(s.provider == "openai" for s in decision.fallbacks)
