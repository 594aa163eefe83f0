"""Per-layer INT8 error: each Conv/Gemm output of the Q/DQ graph against the same node's output in the
FP32 graph, on the same feeds, sorted worst first — where to look when INT8 loses accuracy."""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from rn50.metrics import OutputMetrics, PerInput, TensorError, compare
from rn50.onnx_graph import LAYER_OPS

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class LayerError:
    node: str
    op: str
    sqnr_db: float
    cosine_mean: float
    max_abs: float


def with_tensor_outputs(model: onnx.ModelProto, tensors: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` that also returns ``tensors`` (Polygraphy's "mark outputs")."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    present = {o.name for o in out.graph.output}
    for tensor in tensors:
        if tensor not in present:
            out.graph.output.append(onnx.helper.make_empty_tensor_value_info(tensor))
            present.add(tensor)
    return out


def _with_layer_outputs(model: onnx.ModelProto, nodes: list[str]) -> onnx.ModelProto:
    by_name = {n.name: n for n in model.graph.node}
    return with_tensor_outputs(model, [by_name[name].output[0] for name in nodes])


def run_tensors(model: onnx.ModelProto, feed: np.ndarray, tensors: list[str]) -> list[np.ndarray]:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="rn50-layers-") as tmp:
        path = Path(tmp) / "m.onnx"
        onnx.save_model(model, str(path))
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every layer output
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return session.run(tensors, {"input": feed})


@dataclass(frozen=True)
class Fp32Reference:
    """The FP32 graph's logits and Conv/Gemm outputs on the quality feeds, computed once per command."""

    logits: np.ndarray
    layers: dict[str, np.ndarray]  # node name -> output
    ops: dict[str, str]  # node name -> op type


def layer_outputs(
    model: onnx.ModelProto, feed: np.ndarray, nodes: list[str]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Logits and each named node's first output, in one run."""
    by_name = {n.name: n for n in model.graph.node}
    outs = run_tensors(_with_layer_outputs(model, nodes), feed, ["logits", *(by_name[n].output[0] for n in nodes)])
    return outs[0], dict(zip(nodes, outs[1:], strict=True))


def fp32_reference(fp32: onnx.ModelProto, feed: np.ndarray, *, layers: bool = True) -> Fp32Reference:
    ops = {n.name: n.op_type for n in fp32.graph.node if n.op_type in LAYER_OPS} if layers else {}
    logits, outs = layer_outputs(fp32, feed, list(ops))
    return Fp32Reference(logits, outs, ops)


@dataclass(frozen=True)
class Quality:
    """A file's logits against the FP32 graph: overall, per input (in feed order), and per layer worst first."""

    output: OutputMetrics
    layers: list[LayerError]
    inputs: PerInput


def compare_to_fp32(
    reference: Fp32Reference, candidate: onnx.ModelProto, feed: np.ndarray, *, classes: bool = True
) -> Quality:
    """Final logits against FP32 and, for layers both graphs have, per-layer error worst first (lowest SQNR);
    ``classes`` False: the output is an embedding (no top-1/top-5)."""
    present = {n.name for n in candidate.graph.node if n.op_type in LAYER_OPS}
    names = [n for n in reference.layers if n in present]
    logits, got = layer_outputs(candidate, feed, names)
    rows = []
    for name in names:
        m = TensorError.of(got[name], reference.layers[name])
        rows.append(LayerError(name, reference.ops[name], m.sqnr_db, m.cosine_mean, m.max_abs))
    rows.sort(key=lambda r: r.sqnr_db if math.isfinite(r.sqnr_db) else 1e9)
    return Quality(compare(logits, reference.logits, classes=classes), rows, PerInput.of(logits, reference.logits))
