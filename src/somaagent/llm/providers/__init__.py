"""Provider adapters, picked by id through one lazy-importing factory.

:func:`create_provider` turns a provider id into a :class:`~somaagent.llm.base.Model`:

========== ============================================== ==========================
id         adapter                                        key setting
========== ============================================== ==========================
openai     :class:`.openai.OpenAIModel` (any compatible    ``SOMA_OPENAI_API_KEY``
           server with ``base_url``)                      (optional off OpenAI)
anthropic  :class:`.anthropic.AnthropicModel`             ``SOMA_ANTHROPIC_API_KEY``
local      ``somaagent.llm.providers.local.LocalModel``   none
========== ============================================== ==========================

Adapters are imported only when asked for, so an unused one costs nothing and a missing
optional dependency only matters to whoever uses it.

Third-party providers
---------------------
A package adds a provider by declaring an entry point in the ``somaagent.providers`` group,
named by the provider id, pointing at a callable (usually the model class) that accepts the
keyword arguments ``api_key``, ``base_url``, ``timeout`` and ``model_path`` and returns a
:class:`~somaagent.llm.base.Model`::

    [project.entry-points."somaagent.providers"]
    mistral = "somaagent_mistral:MistralModel"

Built-in ids are looked up first, so a plugin cannot shadow ``openai``, ``anthropic`` or
``local``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import httpx

from somaagent.errors import ConfigurationError
from somaagent.llm.base import Model

__all__ = ["ENTRY_POINT_GROUP", "create_provider"]

ENTRY_POINT_GROUP = "somaagent.providers"

_OPENAI_HOST = "api.openai.com"


def create_provider(
    provider: str,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    timeout: float = 60.0,
    model_path: str | None = None,
) -> Model:
    """Build the model adapter for a provider id.

    Args:
        provider: ``openai``, ``anthropic``, ``local``, or an id registered by a plugin.
        api_key: the provider's key; falls back to ``SOMA_<PROVIDER>_API_KEY``.
        base_url: the provider's API root; falls back to ``SOMA_<PROVIDER>_BASE_URL``, then to
            the vendor's own URL. For ``openai`` this includes ``/v1``.
        timeout: seconds allowed to connect and for each read.
        model_path: the model file, for ``local`` (and plugins that load files).

    Returns:
        A ready :class:`~somaagent.llm.base.Model`.

    Raises:
        ConfigurationError: the id is unknown, a required key is missing (the message names
            the setting), or a setting is malformed.
    """
    builtin = _BUILTINS.get(provider)
    if builtin is not None:
        return builtin(api_key=api_key, base_url=base_url, timeout=timeout, model_path=model_path)
    factory = _plugin(provider)
    model = factory(api_key=api_key, base_url=base_url, timeout=timeout, model_path=model_path)
    return _as_model(model, f"the {ENTRY_POINT_GROUP} entry point {provider!r}")


def _openai(
    *, api_key: str | None, base_url: str | None, timeout: float, model_path: str | None
) -> Model:
    from somaagent.llm.providers.openai import DEFAULT_BASE_URL, OpenAIModel

    key = api_key or os.environ.get("SOMA_OPENAI_API_KEY") or None
    url = base_url or os.environ.get("SOMA_OPENAI_BASE_URL") or DEFAULT_BASE_URL
    if key is None and _host(url) == _OPENAI_HOST:
        raise ConfigurationError(
            "the openai provider needs an API key: set SOMA_OPENAI_API_KEY (or pass api_key=); "
            "an OpenAI-compatible server that needs no key only needs SOMA_OPENAI_BASE_URL"
        )
    return OpenAIModel(api_key=key, base_url=url, timeout=timeout)


def _anthropic(
    *, api_key: str | None, base_url: str | None, timeout: float, model_path: str | None
) -> Model:
    from somaagent.llm.providers.anthropic import AnthropicModel

    key = api_key or os.environ.get("SOMA_ANTHROPIC_API_KEY") or None
    if key is None:
        raise ConfigurationError(
            "the anthropic provider needs an API key: set SOMA_ANTHROPIC_API_KEY (or pass api_key=)"
        )
    url = base_url or os.environ.get("SOMA_ANTHROPIC_BASE_URL") or None
    return AnthropicModel(api_key=key, base_url=url, timeout=timeout)


def _local(
    *, api_key: str | None, base_url: str | None, timeout: float, model_path: str | None
) -> Model:
    from somaagent.llm.providers.local import LocalModel

    return LocalModel(model_path=model_path, timeout=timeout)


_Factory = Callable[..., Model]

_BUILTINS: dict[str, _Factory] = {
    "openai": _openai,
    "anthropic": _anthropic,
    "local": _local,
}


def _plugin(provider: str) -> Callable[..., Any]:
    found = entry_points(group=ENTRY_POINT_GROUP, name=provider)
    for entry_point in found:
        try:
            factory: Callable[..., Any] = entry_point.load()
        except ImportError as exc:
            raise ConfigurationError(
                f"the provider {provider!r} is registered by {entry_point.value!r}, "
                f"which cannot be imported: {exc}"
            ) from exc
        if not callable(factory):
            raise ConfigurationError(
                f"the {ENTRY_POINT_GROUP} entry point {provider!r} ({entry_point.value}) "
                "is not callable"
            )
        return factory
    plugins = sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} - set(_BUILTINS))
    known = ", ".join([*_BUILTINS, *plugins])
    raise ConfigurationError(
        f"unknown provider {provider!r}: use one of {known}, or install a package that "
        f"registers it in the {ENTRY_POINT_GROUP!r} entry-point group"
    )


def _as_model(obj: object, origin: str) -> Model:
    if not isinstance(obj, Model):
        raise ConfigurationError(f"{origin} returned {type(obj).__name__}, not a Model")
    return obj


def _host(url: str) -> str:
    try:
        return httpx.URL(url).host
    except httpx.InvalidURL:
        return ""
