"""Prompt embeddings for the router: an injected embedder and the router's own cache.

The router does not import :mod:`somaagent.memory` (``llm`` sits below it); whoever builds the
router (the gateway's app factory) passes a :data:`PromptEmbedder`: a plain function from texts
to vectors, here the product's local all-MiniLM-L6-v2 (``LocalEmbedder.embed_sync``).
:class:`EmbeddingCache` keeps one vector per distinct prompt text (an LRU keyed by a hash of the
text), so a conversation's repeated decisions (routing, fallback, retries) embed it once.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Literal

__all__ = ["EMBED_GRAPH_OPTIMIZATION", "EMBED_TOKENS", "EmbeddingCache", "PromptEmbedder"]

EMBED_TOKENS = 64
"""The prompt's first tokens that the router embeds (and the heads were trained on). The
embedding's cost grows with its tokens (one thread, int8: about 4.7 ms at 64, 10 ms at 128),
and the held-out APGR did not move between 128, 96 and 64 (``bench/router_experiments.py``,
2026-12-02: 0.571/0.537/0.669/0.534 at 128, 0.571/0.537/0.663/0.534 at 64): the heads lean on
the dense features and the embedding's gist, which its first 64 tokens carry."""

EMBED_GRAPH_OPTIMIZATION: Literal["basic"] = "basic"
"""ONNX Runtime's graph optimisation level for the router's embedder: faster than the
default for the int8 MiniLM on one thread (see ``LocalEmbedder``); the heads are trained on
vectors computed at it."""

PromptEmbedder = Callable[[Sequence[str]], Sequence[Sequence[float]]]
"""Texts -> one vector each (any sequence of floats: a list, a numpy row)."""


class EmbeddingCache:
    """An LRU of prompt vectors in front of a :data:`PromptEmbedder`.

    Args:
        embedder: computes vectors on a miss.
        size: how many prompts to keep.
    """

    def __init__(self, embedder: PromptEmbedder, *, size: int = 4096) -> None:
        self.embedder = embedder
        self.size = size
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[bytes, tuple[float, ...]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def get(self, text: str) -> tuple[float, ...]:
        """The vector of ``text``, computed on first sight.

        Raises:
            Exception: whatever the embedder raises on a miss (the router catches it and
                routes without the embedding).
        """
        key = self._key(text)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return found
        vector = tuple(float(x) for x in self.embedder([text])[0])
        with self._lock:
            self.misses += 1
            self._items[key] = vector
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return vector

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and self._key(text) in self._items

    def __len__(self) -> int:
        return len(self._items)
