"""The local embedder at ONNX Runtime's basic graph optimisation level (what the router's
embedder runs): the same model, vectors as close to sentence-transformers as the default level's,
and a clear error for a level it does not offer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from somaagent.errors import ConfigurationError
from somaagent.memory.embeddings.local import LocalEmbedder

pytestmark = pytest.mark.anyio

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


async def test_basic_level_stays_close_to_the_default_and_the_reference(
    local_model_dir: Path,
) -> None:
    texts = REFERENCE["texts"]
    expected = np.asarray(REFERENCE["vectors"], dtype=np.float32)
    async with LocalEmbedder(data_dir=local_model_dir, graph_optimization="basic") as basic:
        fast = await basic.embed(texts)
    async with LocalEmbedder(data_dir=local_model_dir) as default:
        usual = await default.embed(texts)
    # the same int8 model, only the runtime's fusions differ: measured 0.998 or closer
    assert np.sum(fast * usual, axis=1).min() > 0.99
    # and as faithful to sentence-transformers as test_local_embedder's int8 bounds ask
    cosines = np.sum(fast * expected, axis=1)
    assert cosines[:-1].min() > 0.98, cosines


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="graph_optimization"):
        LocalEmbedder(graph_optimization="extended")  # type: ignore[arg-type]
