"""Per-layer INT8 error: each Conv/Gemm output of the Q/DQ graph against the same node's output in the
FP32 graph, on the same feeds, sorted worst first — where to look when INT8 loses accuracy."""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from rn50.metrics import compare

LAYER_OPS = ("Conv", "Gemm")


@dataclass(frozen=True)
class LayerError:
    node: str
    op: str
    sqnr_db: float
    cosine_mean: float
    max_abs: float


def _with_layer_outputs(model: onnx.ModelProto, nodes: list[str]) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    by_name = {n.name: n for n in out.graph.node}
    present = {o.name for o in out.graph.output}
    for name in nodes:
        tensor = by_name[name].output[0]
        if tensor not in present:
            out.graph.output.append(onnx.helper.make_empty_tensor_value_info(tensor))
    return out


def _run(model: onnx.ModelProto, feed: np.ndarray, tensors: list[str]) -> list[np.ndarray]:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="rn50-layers-") as tmp:
        path = Path(tmp) / "m.onnx"
        onnx.save_model(model, str(path))
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every layer output
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return session.run(tensors, {"input": feed})


def layer_errors(fp32: onnx.ModelProto, quantized: onnx.ModelProto, feed: np.ndarray) -> list[LayerError]:
    """Worst first (lowest SQNR)."""
    q_nodes = {n.name: n for n in quantized.graph.node if n.op_type in LAYER_OPS}
    f_nodes = {n.name: n for n in fp32.graph.node if n.op_type in LAYER_OPS}
    names = [n for n in f_nodes if n in q_nodes]
    ref = _run(_with_layer_outputs(fp32, names), feed, [f_nodes[n].output[0] for n in names])
    got = _run(_with_layer_outputs(quantized, names), feed, [q_nodes[n].output[0] for n in names])
    rows = []
    for name, a, b in zip(names, got, ref, strict=True):
        m = compare(a, b)
        rows.append(LayerError(name, f_nodes[name].op_type, m.sqnr_db, m.cosine_mean, m.max_abs))
    return sorted(rows, key=lambda r: r.sqnr_db if math.isfinite(r.sqnr_db) else 1e9)
