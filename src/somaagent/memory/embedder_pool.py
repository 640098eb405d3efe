"""The embedding models ``POST /v1/embeddings`` serves, by OpenAI-style model name."""

from __future__ import annotations

from somaagent.errors import ValidationError
from somaagent.memory.defaults import EmbedderSource
from somaagent.memory.embeddings.base import Embedder

__all__ = ["EmbedderPool", "embedder_spec_for"]

_LOCAL_NAMES = frozenset({"local", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"})


def embedder_spec_for(model: str) -> str | None:
    """The embedder spec for an OpenAI-style model name, or ``None`` for an unknown one."""
    lowered = model.strip().lower()
    if lowered in _LOCAL_NAMES:
        return "local"
    if ":" in lowered:
        return model.strip()
    if lowered.startswith("text-embedding-"):
        return "openai:" + model.strip()
    if lowered.startswith("embed-"):
        return "cohere:" + model.strip()
    return None


class EmbedderPool:
    """The embedders ``/v1/embeddings`` serves, made on first use.

    ``all-MiniLM-L6-v2`` (or ``local``) is the collections' own local model; ``text-embedding-*``
    goes to OpenAI, ``embed-*`` to Cohere, and ``provider:model`` to that provider.

    Args:
        source: makes the other embedders; ``None``: only ``default`` is served.
        default: the pipeline's own embedder (not closed here).
        default_spec: its spec.
    """

    def __init__(
        self, source: EmbedderSource | None, *, default: Embedder, default_spec: str
    ) -> None:
        self.source = source
        self.default = default
        self.default_spec = default_spec
        self._made: dict[tuple[str, int | None], Embedder] = {}

    def get(self, model: str, *, dimensions: int | None = None) -> Embedder:
        """The embedder for ``model`` (with ``dimensions``, where the model supports it).

        Raises:
            ValidationError: an unknown model, or ``dimensions`` the model cannot give.
            ConfigurationError: the provider's key or extra is missing (a 503).
        """
        spec = embedder_spec_for(model)
        if spec is None:
            raise ValidationError(
                f"unknown embedding model {model!r}: use all-MiniLM-L6-v2 (local), "
                "text-embedding-3-small / -3-large / ada-002 (OpenAI), embed-* (Cohere), "
                "or provider:model",
                errors=[{"loc": ["body", "model"], "msg": "unknown model", "type": "value_error"}],
            )
        supports_dimensions = spec.startswith("openai:text-embedding-3")
        if dimensions is not None and not supports_dimensions:
            raise ValidationError(
                f"model {model!r} does not take `dimensions` (only text-embedding-3-* does)",
                errors=[
                    {"loc": ["body", "dimensions"], "msg": "unsupported", "type": "value_error"}
                ],
            )
        if spec == self.default_spec and dimensions is None:
            return self.default
        key = (spec, dimensions)
        if key not in self._made:
            if self.source is None:
                raise ValidationError(
                    f"this gateway serves only {self.default.name!r} embeddings",
                    errors=[
                        {"loc": ["body", "model"], "msg": "unavailable", "type": "value_error"}
                    ],
                )
            self._made[key] = self.source.make(spec, cache=True, dimensions=dimensions)
        return self._made[key]

    async def aclose(self) -> None:
        """Close the embedders made here (not the default, which the pipeline owns)."""
        for embedder in self._made.values():
            await embedder.aclose()
        self._made.clear()
