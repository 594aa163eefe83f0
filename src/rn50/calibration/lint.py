"""Rules a Q/DQ model must follow for its target, checked before any file is written or parsed.

TensorRT: opset >= 13; int8 with zero point 0 everywhere; weights per-channel on axis 0; activations
per-tensor; float bias; every Conv/Gemm quantized except those the file says were left out of INT8
(``rn50.int8_excluded``), which must not be; at a residual Add at most one input dequantized, and the
other produced by a Conv (so Conv+Add+ReLU fuse).
ONNX Runtime CPU: int8 per-channel weights (axis 0); uint8 activations, or int8 ones with a warning (valid,
but slower on x86).

Weights are recognised in both forms other tools write: int8 initializer → DequantizeLinear (rn50, ONNX
Runtime) and float initializer → QuantizeLinear → DequantizeLinear (NVIDIA ModelOpt; TensorRT folds it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnx
from onnx import numpy_helper

from rn50.errors import UsageError
from rn50.onnx_graph import LAYER_OPS, dequantized, opset_of, residual_adds
from rn50.runtimes.qdq_form import QDQ_TARGETS, QDQ_TENSORRT, producers
from rn50.words import cmd

TARGETS = QDQ_TARGETS
EXCLUDED_KEY = "rn50.int8_excluded"  # metadata: JSON list of the Conv/Gemm nodes (and residual Adds) left out of INT8
# Measured (benchmarks/bench_int8_budget.py: 2-core AMD EPYC with AVX-512 VNNI, ONNX Runtime 1.32, seeded
# ResNet-50, batch 1, 2 threads, medians of 3 alternating 5 s runs): int8 activations vs uint8, same
# calibration, every Conv/Gemm INT8: 29.49 vs 12.26 ms and, in a second run, 30.01 vs 12.48 ms.
S8_ACTIVATION_COST = "2.4x slower at batch 1 than uint8 activations (measured on a 2-core x86 CPU with AVX-512 VNNI)"
Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Violation:
    rule: str
    node: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"[{self.rule}] {self.node}: {self.message}"


def excluded_of(model: onnx.ModelProto) -> frozenset[str]:
    """The Conv/Gemm nodes left out of INT8: as rn50 recorded them (rn50 quantize), or, in a file another tool
    wrote, those whose weight is not dequantized (ModelOpt, for one, keeps the classifier in float)."""
    meta = {p.key: p.value for p in model.metadata_props}
    if EXCLUDED_KEY not in meta:
        return float_layers(model)
    try:
        names = json.loads(meta[EXCLUDED_KEY])
    except ValueError:
        raise UsageError(
            f"the model's {EXCLUDED_KEY} metadata is not a JSON list",
            fix=f"regenerate it with {cmd('quantize', int8=True)}",
        ) from None
    return frozenset(str(n) for n in names)


def quantized_layers(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Conv/Gemm nodes whose weight is dequantized (they run in INT8), in graph order."""
    made_by = producers(model.graph)
    return [
        n for n in model.graph.node if n.op_type in LAYER_OPS and len(n.input) > 1 and dequantized(n.input[1], made_by)
    ]


def float_layers(model: onnx.ModelProto) -> frozenset[str]:
    """Conv/Gemm nodes whose weight is float (they run in float)."""
    quantized = {n.name for n in quantized_layers(model)}
    return frozenset(
        n.name for n in model.graph.node if n.op_type in LAYER_OPS and len(n.input) > 1 and n.name not in quantized
    )


def lint(model: onnx.ModelProto, target: str) -> list[Violation]:
    """Every broken rule (``severity`` "error") and every valid but costly choice ("warning")."""
    if target not in TARGETS:
        raise UsageError(f"unknown Q/DQ target {target!r}", fix=f"use one of {', '.join(TARGETS)}")
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    made_by = producers(graph)
    recorded = any(p.key == EXCLUDED_KEY for p in model.metadata_props)
    excluded = excluded_of(model)
    out: list[Violation] = []
    if opset_of(model) < 13:
        out.append(Violation("opset", "model", f"opset {opset_of(model)} < 13: per-channel Q/DQ needs 13"))
    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    s8_activations: list[str] = []
    if not qdq:
        out.append(Violation("quantized", "model", "no QuantizeLinear/DequantizeLinear nodes: not a Q/DQ model"))

    # ModelOpt's weight form: QuantizeLinear of a float initializer, then DequantizeLinear.
    weight_q = {n.name for n in qdq if n.op_type == "QuantizeLinear" and n.input[0] in inits}

    def is_weight(node: onnx.NodeProto) -> bool:
        if node.name in weight_q:
            return True
        src = made_by.get(node.input[0])
        return node.op_type == "DequantizeLinear" and (
            node.input[0] in inits or (src is not None and src.name in weight_q)
        )

    bias_dq = {
        made_by[n.input[2]].name
        for n in graph.node
        if n.op_type in ("Conv", "Gemm") and len(n.input) > 2 and n.input[2] in made_by
    }
    for node in qdq:
        if node.name in bias_dq:
            continue  # int32 bias: allowed for ONNX Runtime, reported as float-bias below for TensorRT
        zp = inits.get(node.input[2]) if len(node.input) > 2 else None
        scale = inits.get(node.input[1]) if len(node.input) > 1 else None
        weight = is_weight(node)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if target == QDQ_TENSORRT:
            if zp is None or zp.dtype != np.int8:
                out.append(
                    Violation(
                        "int8", node.name, f"zero point is {None if zp is None else zp.dtype}, TensorRT needs int8"
                    )
                )
            elif np.any(zp != 0):
                out.append(
                    Violation("symmetric", node.name, "non-zero zero point: TensorRT needs symmetric quantization")
                )
        elif weight and (zp is None or zp.dtype != np.int8):
            out.append(
                Violation("u8s8", node.name, f"weights quantized to {None if zp is None else zp.dtype}, expected int8")
            )
        elif not weight and zp is not None and zp.dtype == np.int8:
            s8_activations.append(node.name)
        elif not weight and (zp is None or zp.dtype != np.uint8):
            out.append(
                Violation(
                    "u8s8",
                    node.name,
                    f"activations quantized to {None if zp is None else zp.dtype}, expected uint8 (or int8)",
                )
            )
        if scale is not None and weight and (scale.ndim != 1 or axis != 0):
            out.append(
                Violation(
                    "per-channel",
                    node.name,
                    f"weight scale shape {scale.shape} axis {axis}: expected per-channel on axis 0",
                )
            )
        if scale is not None and not weight and scale.ndim != 0:
            out.append(Violation("per-tensor", node.name, f"activation scale shape {scale.shape}: expected a scalar"))

    if excluded and not recorded and qdq:
        names = sorted(excluded)
        out.append(
            Violation(
                "float-layers",
                names[0],
                f"{len(names)} Conv/Gemm layer(s) keep float weights and will run in float: "
                f"{', '.join(names[:3])}{' …' if len(names) > 3 else ''}",
                "warning",
            )
        )
    if s8_activations:
        out.append(
            Violation(
                "u8s8",
                s8_activations[0],
                f"{len(s8_activations)} activation Q/DQ node(s) use int8: valid, but "
                f"{S8_ACTIVATION_COST}; quantize activations to uint8 for ONNX Runtime on x86",
                "warning",
            )
        )
    for node in quantized_layers(model):
        if node.name in excluded:
            out.append(Violation("excluded", node.name, "recorded as left out of INT8, but its weight is dequantized"))
    if target == QDQ_TENSORRT:
        residual = {n.name for n in residual_adds(graph)}
        for node in graph.node:
            if node.op_type in LAYER_OPS and node.name in excluded:
                if dequantized(node.input[0], made_by):
                    out.append(
                        Violation("excluded", node.name, "recorded as left out of INT8, but its input is dequantized")
                    )
            elif node.op_type == "Add" and node.name in excluded:
                if any(dequantized(i, made_by) for i in node.input):
                    out.append(
                        Violation(
                            "excluded", node.name, "recorded as left out of INT8, but its shortcut is dequantized"
                        )
                    )
            elif node.op_type in LAYER_OPS:
                if not all(dequantized(i, made_by) for i in node.input[:2]):
                    out.append(
                        Violation(
                            "quantized",
                            node.name,
                            f"{node.op_type} input or weight is not dequantized: it would run in float",
                        )
                    )
                if len(node.input) > 2 and dequantized(node.input[2], made_by):
                    out.append(Violation("float-bias", node.name, "bias is quantized: TensorRT takes a float bias"))
            if node.name in residual:
                src = [made_by.get(i) for i in node.input]
                dq = [dequantized(i, made_by) for i in node.input]
                if all(dq):
                    out.append(
                        Violation(
                            "residual-add",
                            node.name,
                            "both inputs quantized: breaks Conv+Add+ReLU fusion; quantize only the shortcut",
                        )
                    )
                elif any(dq):
                    other = src[dq.index(False)]
                    if other is None or other.op_type != "Conv":
                        out.append(
                            Violation(
                                "residual-add",
                                node.name,
                                "the Conv branch is quantized instead of the shortcut: breaks Conv+Add fusion",
                            )
                        )
    return out


def check(model: onnx.ModelProto, target: str) -> list[Violation]:
    """Refuses a model that breaks a rule; returns the warnings."""
    found = lint(model, target)
    problems = [v for v in found if v.severity == "error"]
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UsageError(
            f"Q/DQ model breaks a {target} rule: {problems[0]}{more}",
            fix=f"regenerate it with {cmd('quantize', int8=True, target=target)}",
        )
    return [v for v in found if v.severity == "warning"]
