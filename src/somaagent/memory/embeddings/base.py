"""The embedding-model contract every back-end implements (the factory that picks one by its
spec is :func:`somaagent.memory.embeddings.registry.create_embedder`).

Contract (held by ``tests/memory/test_embedder_contract.py`` over every back-end):

* ``name`` is the model's name (``all-MiniLM-L6-v2``, ``text-embedding-3-small``) and
  ``dimension`` the length of its vectors.
* :meth:`Embedder.embed` takes a batch of texts and returns a C-contiguous ``float32`` array of
  shape ``(len(texts), dimension)`` whose rows are L2-normalised, in input order. An empty batch
  gives an empty ``(0, dimension)`` array.
* ``input_type`` says whether the texts are documents to index or queries to search with;
  models that embed both alike (MiniLM, OpenAI) ignore it, Cohere v3 sends it.
* Nothing is ever silently zero: an input that cannot be embedded, or an answer with a missing,
  non-finite or zero vector, raises :class:`~somaagent.errors.EmbeddingError` whose ``items``
  name the failed inputs. Transport failures are the typed
  :class:`~somaagent.errors.ProviderError` subclasses (rate limit, timeout, authentication...).

Back-ends are picked by a string id through :func:`~.registry.create_embedder`:

=================================== ==============================================
spec                                back-end
=================================== ==============================================
``local`` / ``local:all-MiniLM-L6-v2`` the bundled MiniLM on ONNX Runtime (default)
``openai:text-embedding-3-small``   OpenAI (``ada-002``, ``-3-small``, ``-3-large``)
``cohere:embed-english-v3.0``       Cohere v3 (``english``/``multilingual``, ``-light``)
=================================== ==============================================

Third parties add back-ends through the ``somaagent.embedders`` entry-point group (the name is
the spec's prefix; the object is called with the model name and the options).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from types import TracebackType
from typing import Literal, Self, TypeAlias

import numpy as np
import numpy.typing as npt

from somaagent.errors import EmbeddingError

__all__ = [
    "Embedder",
    "InputType",
    "Vectors",
    "check_texts",
    "check_vectors",
]

InputType = Literal["document", "query"]
Vectors: TypeAlias = npt.NDArray[np.float32]


class Embedder(abc.ABC):
    """An embedding model behind SomaAgent's one interface (the contract is the module docstring).

    Use as an async context manager, or call :meth:`aclose` when done.
    """

    name: str
    """The model's name, as the vendor spells it."""
    dimension: int
    """The length of the vectors it returns."""
    provider: str
    """The back-end id (``local``, ``openai``, ``cohere``, ...)."""
    input_types_differ: bool = False
    """Whether ``input_type`` changes the vectors (Cohere v3), e.g. for cache keys."""

    @abc.abstractmethod
    async def embed(self, texts: Sequence[str], *, input_type: InputType = "document") -> Vectors:
        """Embed a batch of texts.

        Args:
            texts: the inputs, in order.
            input_type: ``"document"`` for texts to index, ``"query"`` for search queries.

        Returns:
            ``float32`` array of shape ``(len(texts), dimension)``, rows L2-normalised.

        Raises:
            EmbeddingError: some inputs could not be embedded (``items`` names them).
            ProviderError: the back-end failed as a whole (typed subclasses).
        """

    async def aclose(self) -> None:  # noqa: B027 - a no-op default, overridden where needed
        """Release the model's resources (HTTP clients, sessions)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.provider}:{self.name} dimension={self.dimension}>"


def check_vectors(
    raw: npt.ArrayLike,
    *,
    expected: int,
    dimension: int,
    provider: str,
    offset: int = 0,
    normalise: bool = True,
) -> Vectors:
    """Validate (and L2-normalise) a batch of vectors a back-end produced.

    Args:
        raw: the vectors, one row per input.
        expected: how many rows there must be.
        dimension: how long each row must be.
        provider: the back-end id, for the error.
        offset: the index of the first row in the caller's batch, so errors name the caller's
            items.
        normalise: scale each row to unit length.

    Returns:
        A C-contiguous ``float32`` array of shape ``(expected, dimension)``.

    Raises:
        EmbeddingError: wrong shape, or rows that are non-finite or zero (named by index).
    """
    array = np.asarray(raw, dtype=np.float32)
    if array.ndim != 2 or array.shape != (expected, dimension):
        raise EmbeddingError(
            f"expected {expected} vectors of dimension {dimension}, got shape {array.shape}",
            provider=provider,
            items=range(offset, offset + expected),
        )
    finite: npt.NDArray[np.bool_] = np.asarray(np.isfinite(array).all(axis=1))
    norms = np.linalg.norm(np.where(finite[:, None], array, 0.0), axis=1)
    bad = np.flatnonzero(~finite | (norms <= 1e-12))
    if bad.size:
        items = [offset + int(index) for index in bad]
        raise EmbeddingError(
            f"the model returned a zero or non-finite vector for item(s) {_span(items)}",
            provider=provider,
            items=items,
        )
    if normalise:
        array = array / norms[:, None].astype(np.float32)
    return np.ascontiguousarray(array, dtype=np.float32)


def check_texts(texts: Sequence[object], *, provider: str, allow_empty: bool = True) -> None:
    """Raise :class:`EmbeddingError` naming the items that are not (non-empty) strings."""
    bad = [
        index
        for index, text in enumerate(texts)
        if not isinstance(text, str) or (not allow_empty and not text)
    ]
    if bad:
        kind = "strings" if allow_empty else "non-empty strings"
        raise EmbeddingError(f"item(s) {_span(bad)} are not {kind}", provider=provider, items=bad)


def _span(items: Sequence[int], limit: int = 10) -> str:
    shown = ", ".join(str(item) for item in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
