"""Build an ONNX graph of a BERT sentence encoder straight from its safetensors weights.

No torch and no hub: the graph is written node by node with :mod:`onnx.helper`, for the
architecture sentence-transformers' MiniLM models use (BERT encoder, mean pooling over the
attention mask). The graph takes ``input_ids`` and ``attention_mask`` (``int64``, batch × tokens)
and returns ``sentence_embedding`` (``float32``, batch × hidden), not yet normalised.

Token types are always 0 for single-sentence inputs, so the type-0 embedding is folded into the
position table. Each layer's attention is ONNX Runtime's fused ``Attention`` contrib kernel. The
output is checked against sentence-transformers' own vectors in
``tests/memory/test_local_embedder.py`` and ``bench/memory_embeddings.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["GRAPH_VERSION", "build_bert_encoder"]

OPSET = 20  # Gelu is a standard op from 20 on
GRAPH_VERSION = 2  # part of the cached file's name: bump it when the graph changes


class _Graph:
    """A tiny builder: names nodes and initialisers uniquely."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper = helper
        self.numpy_helper = numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def const(self, name: str, value: npt.ArrayLike, dtype: Any = np.float32) -> str:
        array = np.asarray(value, dtype=dtype)
        self.initializers.append(self.numpy_helper.from_array(array, name))
        return name

    def op(self, kind: str, inputs: list[str], *, domain: str = "", **attrs: Any) -> str:
        self._count += 1
        out = f"{kind.lower()}_{self._count}"
        node = self.helper.make_node(kind, inputs, [out], name=out, domain=domain, **attrs)
        self.nodes.append(node)
        return out

    def linear(self, x: str, weights: dict[str, npt.NDArray[Any]], prefix: str) -> str:
        # torch stores (out, in); MatMul wants (in, out)
        w = self.const(f"{prefix}.w", np.ascontiguousarray(weights[f"{prefix}.weight"].T))
        b = self.const(f"{prefix}.b", weights[f"{prefix}.bias"])
        return self.op("Add", [self.op("MatMul", [x, w]), b])

    def layer_norm(
        self, x: str, weights: dict[str, npt.NDArray[Any]], prefix: str, eps: float
    ) -> str:
        scale = self.const(f"{prefix}.gamma", weights[f"{prefix}.weight"])
        bias = self.const(f"{prefix}.beta", weights[f"{prefix}.bias"])
        return self.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=eps)


def _fused_attention(
    g: _Graph, x: str, mask_i32: str, w: dict[str, npt.NDArray[Any]], prefix: str, heads: int
) -> str:
    # ONNX Runtime's contrib Attention: one packed QKV projection, softmax and context in one
    # kernel (and QAttention once quantised), instead of ~12 generic nodes per layer.
    names = ("query", "key", "value")
    packed = np.concatenate([w[f"{prefix}.self.{n}.weight"].T for n in names], axis=1)
    bias = np.concatenate([w[f"{prefix}.self.{n}.bias"] for n in names])
    weights = g.const(f"{prefix}.qkv.w", np.ascontiguousarray(packed))
    biases = g.const(f"{prefix}.qkv.b", bias)
    return g.op(
        "Attention", [x, weights, biases, mask_i32], domain="com.microsoft", num_heads=heads
    )


def build_bert_encoder(model_dir: Path) -> bytes:
    """Serialise the encoder + mean-pooling graph of the model in ``model_dir``.

    Args:
        model_dir: a sentence-transformers folder with ``config.json`` and ``model.safetensors``.

    Returns:
        The ONNX model, serialised.
    """
    from onnx import TensorProto, checker, helper
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text())
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    layers, eps = int(config["num_hidden_layers"]), float(config.get("layer_norm_eps", 1e-12))
    if config.get("hidden_act", "gelu") != "gelu" or config.get("model_type") != "bert":
        raise ValueError(f"{model_dir} is not a GELU BERT encoder")
    w = load_file(str(model_dir / "model.safetensors"))
    w = {key.removeprefix("bert."): value for key, value in w.items()}

    g = _Graph()
    ids, mask = "input_ids", "attention_mask"
    words = g.const("word_embeddings", w["embeddings.word_embeddings.weight"])
    positions = (
        w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0]
    )
    pos_table = g.const("position_embeddings", positions)
    seq_len = g.op("Gather", [g.op("Shape", [ids]), g.const("one_index", 1, np.int64)], axis=0)
    pos_ids = g.op("Range", [g.const("zero", 0, np.int64), seq_len, g.const("one", 1, np.int64)])
    x = g.op("Add", [g.op("Gather", [words, ids]), g.op("Gather", [pos_table, pos_ids])])
    x = g.layer_norm(x, w, "embeddings.LayerNorm", eps)

    mask_i32 = g.op("Cast", [mask], to=TensorProto.INT32)
    for layer in range(layers):
        p = f"encoder.layer.{layer}"
        attn = _fused_attention(g, x, mask_i32, w, f"{p}.attention", heads)
        attn = g.linear(attn, w, f"{p}.attention.output.dense")
        x = g.layer_norm(g.op("Add", [attn, x]), w, f"{p}.attention.output.LayerNorm", eps)
        inner = g.op("Gelu", [g.linear(x, w, f"{p}.intermediate.dense")])
        out = g.linear(inner, w, f"{p}.output.dense")
        x = g.layer_norm(g.op("Add", [out, x]), w, f"{p}.output.LayerNorm", eps)

    mask_f = g.op("Cast", [mask], to=TensorProto.FLOAT)  # B, S
    mask3 = g.op("Unsqueeze", [mask_f, g.const("axis2", [2], np.int64)])  # B, S, 1
    axis1 = g.const("axis1", [1], np.int64)
    summed = g.op("ReduceSum", [g.op("Mul", [x, mask3]), axis1], keepdims=0)
    counts = g.op("Max", [g.op("ReduceSum", [mask3, axis1], keepdims=0), g.const("tiny", 1e-9)])
    g.nodes.append(helper.make_node("Div", [summed, counts], ["sentence_embedding"]))

    graph = helper.make_graph(
        g.nodes,
        "sentence_encoder",
        [
            helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info(mask, TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden])],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)],
        producer_name="somaagent",
    )
    model.ir_version = 9
    checker.check_model(model)
    return bytes(model.SerializeToString())
