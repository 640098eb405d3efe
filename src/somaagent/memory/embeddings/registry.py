"""Embedder specs to back-ends: :func:`create_embedder`, the one lazy-importing factory.

A spec is ``"provider"`` or ``"provider:model"``. Built-in providers (``local``, ``openai``,
``cohere``) are imported only when named; others come from the ``somaagent.embedders``
entry-point group, whose entries are named by the prefix and called with the options::

    [project.entry-points."somaagent.embedders"]
    voyage = "somaagent_voyage:VoyageEmbedder"

The same convention as the vector stores' :func:`somaagent.memory.stores.registry.create_store`.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Final

from somaagent.errors import ConfigurationError
from somaagent.memory.embeddings.base import Embedder

__all__ = ["ENTRY_POINT_GROUP", "create_embedder"]

ENTRY_POINT_GROUP: Final = "somaagent.embedders"


def _builtin(prefix: str) -> Callable[..., Embedder] | None:
    if prefix == "local":
        from somaagent.memory.embeddings.local import LocalEmbedder

        return LocalEmbedder
    if prefix == "openai":
        from somaagent.memory.embeddings.openai import OpenAIEmbedder

        return OpenAIEmbedder
    if prefix == "cohere":
        from somaagent.memory.embeddings.cohere import CohereEmbedder

        return CohereEmbedder
    return None


def create_embedder(spec: str, **options: Any) -> Embedder:
    """Build the embedder a spec names, importing only that back-end.

    Args:
        spec: ``"provider"`` or ``"provider:model"`` (see the module docstring).
        **options: back-end keyword options (``api_key``, ``base_url``, ``dimensions``,
            ``batch_size``, ``max_retries``, ``data_dir``...).

    Returns:
        The embedder; models and connections are loaded on first use.

    Raises:
        ConfigurationError: unknown provider, or its extra is not installed (named).
    """
    prefix, _, model = spec.strip().partition(":")
    prefix = prefix.lower()
    factory = _builtin(prefix)
    if factory is None:
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            if entry.name == prefix:
                factory = entry.load()
                break
    if factory is None:
        raise ConfigurationError(
            f"unknown embedding provider {prefix!r} in {spec!r}: use local, openai:<model>, "
            f"cohere:<model>, or install a plugin in the {ENTRY_POINT_GROUP!r} entry-point group"
        )
    if model:
        options["model"] = model
    embedder = factory(**options)
    if not isinstance(embedder, Embedder):
        raise ConfigurationError(f"the {prefix!r} embedder plugin did not return an Embedder")
    return embedder
