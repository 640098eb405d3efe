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

__all__ = ["EMBED_TOKENS", "EmbeddingCache", "PromptEmbedder"]

EMBED_TOKENS = 128
"""The prompt's first tokens that the router embeds (and the heads were trained on): half of
MiniLM's 256 halves the uncached decision's CPU p99 (27.6 to 14.1 ms for the embedding alone on
RouteLLM's prompts, one thread, 2026-12-02); the held-out figures were measured with it."""

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
