"""Rules a Q/DQ model must follow for its target, checked before any file is written or parsed.

TensorRT: opset >= 13; int8 with zero point 0 everywhere; weights per-channel on axis 0; activations
per-tensor; float bias; every Conv/Gemm quantized; at a residual Add at most one input dequantized,
and the other produced by a Conv (so Conv+Add+ReLU fuse).
ONNX Runtime CPU: uint8 activations, int8 per-channel weights (axis 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from rn50.calibration.qdq_tensorrt import producers
from rn50.errors import UsageError
from rn50.exporter.simplify import opset_of

TARGETS = ("tensorrt", "onnxruntime-cpu")


@dataclass(frozen=True)
class Violation:
    rule: str
    node: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.node}: {self.message}"


def lint(model: onnx.ModelProto, target: str) -> list[Violation]:
    if target not in TARGETS:
        raise UsageError(f"unknown Q/DQ target {target!r}", fix=f"use one of {', '.join(TARGETS)}")
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    made_by = producers(graph)
    out: list[Violation] = []
    if opset_of(model) < 13:
        out.append(Violation("opset", "model", f"opset {opset_of(model)} < 13: per-channel Q/DQ needs 13"))
    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qdq:
        out.append(Violation("quantized", "model", "no QuantizeLinear/DequantizeLinear nodes: not a Q/DQ model"))

    def is_weight_dq(node: onnx.NodeProto) -> bool:
        return node.op_type == "DequantizeLinear" and node.input[0] in inits

    bias_dq = {made_by[n.input[2]].name for n in graph.node
               if n.op_type in ("Conv", "Gemm") and len(n.input) > 2 and n.input[2] in made_by}  # fmt: skip
    for node in qdq:
        if node.name in bias_dq:
            continue  # int32 bias: allowed for ONNX Runtime, reported as float-bias below for TensorRT
        zp = inits.get(node.input[2]) if len(node.input) > 2 else None
        scale = inits.get(node.input[1]) if len(node.input) > 1 else None
        weight = is_weight_dq(node)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if target == "tensorrt":
            if zp is None or zp.dtype != np.int8:
                out.append(Violation("int8", node.name, f"zero point is {None if zp is None else zp.dtype}, TensorRT needs int8"))
            elif np.any(zp != 0):
                out.append(Violation("symmetric", node.name, "non-zero zero point: TensorRT needs symmetric quantization"))
        else:
            want = np.int8 if weight else np.uint8
            if zp is None or zp.dtype != want:
                kind = "weights" if weight else "activations"
                out.append(Violation("u8s8", node.name, f"{kind} quantized to {None if zp is None else zp.dtype}, expected {np.dtype(want)}"))
        if scale is not None and weight and (scale.ndim != 1 or axis != 0):
            out.append(Violation("per-channel", node.name, f"weight scale shape {scale.shape} axis {axis}: expected per-channel on axis 0"))
        if scale is not None and not weight and scale.ndim != 0:
            out.append(Violation("per-tensor", node.name, f"activation scale shape {scale.shape}: expected a scalar"))

    if target == "tensorrt":
        for node in graph.node:
            if node.op_type in ("Conv", "Gemm"):
                src = [made_by.get(i) for i in node.input[:2]]
                if not all(s is not None and s.op_type == "DequantizeLinear" for s in src):
                    out.append(Violation("quantized", node.name, f"{node.op_type} input or weight is not dequantized: it would run in float"))
                if len(node.input) > 2 and made_by.get(node.input[2]) is not None and made_by[node.input[2]].op_type == "DequantizeLinear":
                    out.append(Violation("float-bias", node.name, "bias is quantized: TensorRT takes a float bias"))
            if node.op_type == "Add" and not any(i in inits for i in node.input):
                src = [made_by.get(i) for i in node.input]
                dq = [s is not None and s.op_type == "DequantizeLinear" for s in src]
                if all(dq):
                    out.append(Violation("residual-add", node.name, "both inputs quantized: breaks Conv+Add+ReLU fusion; quantize only the shortcut"))
                elif any(dq):
                    other = src[dq.index(False)]
                    if other is None or other.op_type != "Conv":
                        out.append(Violation("residual-add", node.name, "the Conv branch is quantized instead of the shortcut: breaks Conv+Add fusion"))
    return out


def check(model: onnx.ModelProto, target: str) -> None:
    problems = lint(model, target)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UsageError(f"Q/DQ model breaks a {target} rule: {problems[0]}{more}", fix="regenerate it with rn50 quantize --int8 --target " + target)
