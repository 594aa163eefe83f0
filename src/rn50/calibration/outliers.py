"""Why an input fails INT8: where its activations leave the range its Q/DQ file can represent (× that range), and
the first layer where its own error departs from the FP32 graph — per input, not averaged over inputs (a handful
of inputs far outside what calibration saw is invisible in a mean).

The ranges are read from the Q/DQ file itself (each activation QuantizeLinear's scale and zero point, whatever
calibrator made them); the activations from the FP32 graph the file was made from, on the inputs asked about."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import numpy_helper

from rn50.calibration.quality import layer_outputs, run_tensors, with_tensor_outputs
from rn50.metrics import cosine_per_input
from rn50.onnx_graph import LAYER_OPS

if TYPE_CHECKING:
    from collections.abc import Sequence

# A layer's output "departs" on an input where its error against the FP32 graph (1 − cosine) is DEPART_FACTOR times
# the same layer's typical error (the median over inputs that pass) and its cosine is below DEPARTS: INT8 error
# grows with depth on every input (the seeded ResNet-50's last convolution measures 0.93–0.99 on inputs that pass),
# so a fixed bound alone would name the deepest layers for every input.
DEPARTS = 0.99
DEPART_FACTOR = 4.0
BASELINE = 8  # inputs that pass, run beside the failing ones for each layer's typical error


@dataclass(frozen=True)
class Excess:
    node: str  # the layer whose quantized input leaves its range
    ratio: float  # the input's largest excursion over the representable bound on that side (> 1: clipped)


@dataclass(frozen=True)
class InputCause:
    input: str
    outside: tuple[Excess, ...]  # worst first; only ratios above 1
    departs: str | None  # the first layer, in graph order, whose output departs from FP32 on this input
    departs_cosine: float | None
    lowest: str | None  # the layer with the lowest cosine on this input
    lowest_cosine: float | None


@dataclass(frozen=True)
class Range:
    lo: float
    hi: float
    layers: tuple[str, ...]  # the Conv/Gemm nodes that read the quantized tensor


def activation_ranges(qdq: onnx.ModelProto) -> dict[str, Range]:
    """Tensor → the range its QuantizeLinear can represent, for every activation the file quantizes (weights, whose
    QuantizeLinear reads an initializer, left out)."""
    inits = {i.name: numpy_helper.to_array(i) for i in qdq.graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in qdq.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def layers_after(q: onnx.NodeProto) -> tuple[str, ...]:
        found = []
        for dq in consumers.get(q.output[0], []):  # Q → DQ → Conv/Gemm
            for dq_out in dq.output:
                found += [n.name for n in consumers.get(dq_out, []) if n.op_type in LAYER_OPS]
        return tuple(dict.fromkeys(found))

    out: dict[str, Range] = {}
    for node in qdq.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in inits or node.input[1] not in inits:
            continue
        scale = inits[node.input[1]]
        if scale.size != 1:
            continue  # per-channel: a weight's
        zero = inits.get(node.input[2]) if len(node.input) > 2 else None
        z = float(zero.reshape(-1)[0]) if zero is not None else 0.0
        qmin, qmax = (0, 255) if zero is not None and zero.dtype == np.uint8 else (-128, 127)
        s = float(scale.reshape(-1)[0])
        out[node.input[0]] = Range(s * (qmin - z), s * (qmax - z), layers_after(node))
    return out


def _excess(x: np.ndarray, r: Range) -> float:
    """How far ``x`` (one input's activation) leaves ``r``, as a multiple of the bound on the side it leaves."""
    up = float(x.max()) / r.hi if r.hi > 0 else 0.0
    down = float(x.min()) / r.lo if r.lo < 0 else 0.0
    return max(up, down)


def departs(cosine: np.ndarray, typical: np.ndarray) -> np.ndarray:
    """Where a layer's output departs on an input: its cosine below DEPARTS and its error (1 − cosine)
    DEPART_FACTOR times the layer's typical error (elementwise)."""
    return (cosine < DEPARTS) & ((1 - cosine) > DEPART_FACTOR * np.maximum(1 - typical, 1e-9))


def explain(
    fp32: onnx.ModelProto,
    qdq: onnx.ModelProto,
    images: np.ndarray,
    names: Sequence[str],
    baseline: np.ndarray | None = None,
) -> list[InputCause]:
    """For each of ``images`` (the failing inputs, named ``names``): the layers whose quantized inputs it drives
    out of range, and where its error first departs from the FP32 graph (``baseline``: inputs that pass, for each
    layer's typical error; without them a layer departs where its cosine is below DEPARTS)."""
    ranges = {t: r for t, r in activation_ranges(qdq).items() if r.layers}
    known = {o for n in fp32.graph.node for o in n.output} | {i.name for i in fp32.graph.input}
    tensors = [t for t in ranges if t in known]
    activations = run_tensors(with_tensor_outputs(fp32, tensors), images, tensors) if tensors else []
    layer_nodes = [n.name for n in fp32.graph.node if n.op_type in LAYER_OPS]
    shared = [n for n in layer_nodes if n in {m.name for m in qdq.graph.node}]
    batch = images if baseline is None or not len(baseline) else np.concatenate([images, baseline])
    _, ref_layers = layer_outputs(fp32, batch, shared)
    _, got_layers = layer_outputs(qdq, batch, shared)
    cos = np.empty((len(batch), len(shared)))  # (inputs, layers)
    for j, node in enumerate(shared):
        cos[:, j] = cosine_per_input(got_layers[node], ref_layers[node])
    typical = np.median(cos[len(images) :], axis=0) if len(batch) > len(images) else np.ones(len(shared))
    causes = []
    for i, name in enumerate(names):
        excess: dict[str, float] = {}
        for t, act in zip(tensors, activations, strict=True):
            ratio = _excess(act[i], ranges[t])
            for layer in ranges[t].layers:
                excess[layer] = max(excess.get(layer, 0.0), ratio)
        outside = tuple(Excess(n, r) for n, r in sorted(excess.items(), key=lambda kv: -kv[1]) if r > 1.0 + 1e-6)
        mine = cos[i]
        departing = departs(mine, typical)
        first = int(np.argmax(departing)) if departing.any() else None
        low = int(np.argmin(mine)) if len(shared) else None
        causes.append(
            InputCause(
                name,
                outside,
                shared[first] if first is not None else None,
                float(mine[first]) if first is not None else None,
                shared[low] if low is not None else None,
                float(mine[low]) if low is not None else None,
            )
        )
    return causes
