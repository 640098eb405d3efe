"""Per-prompt model quality, learned from public outcomes (and, per tenant, from its feedback).

* :mod:`.heads`: :class:`~.heads.QualityHeads`, the shipped per-model linear heads over the
  prompt's cheap features and MiniLM embedding (what the router uses when it has an embedder);
* :mod:`.embedding`: the injected embedder's type and the router's embedding cache;
* :mod:`.fitting`, :mod:`.arena`, :mod:`.data`: the public training data (RouteLLM's GSM8K,
  MMLU and MT-Bench outcomes, arena-bench-v1's 15 models) and ridge fitting (numpy);
  ``bench/router.py --write-artifact`` writes the shipped heads;
* :mod:`.quality`: every registry model's quality on a prompt, and which evidence it came from;
* :mod:`.features`: the cheap features (standard library only);
* :mod:`.model` and :mod:`.train`: the older hashed-word heads, used when no embedder is given.
"""

from __future__ import annotations

from somaagent.llm.learned.model import LearnedRouter, Prediction, load_default

__all__ = ["LearnedRouter", "Prediction", "load_default"]
