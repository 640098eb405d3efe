"""The learned router: per-prompt quality of two anchor models, trained on RouteLLM's data.

* :mod:`.features`: prompt → hashed words + complexity features (standard library only);
* :mod:`.model`: :class:`LearnedRouter`, which loads the shipped artifact and predicts;
* :mod:`.data`: reading RouteLLM's outcomes, without contaminated prompts;
* :mod:`.train`: ``python -m somaagent.llm.learned.train`` writes the artifact (needs numpy).
"""

from __future__ import annotations

from somaagent.llm.learned.model import LearnedRouter, Prediction, load_default

__all__ = ["LearnedRouter", "Prediction", "load_default"]
