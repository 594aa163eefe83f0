"""Q/DQ for TensorRT's explicit quantization, written by hand: ONNX Runtime's quantizer cannot express
TensorRT's placement rules (float bias; at a residual Add only the shortcut input quantized, so that
TensorRT fuses Conv+Add+ReLU). Symmetric int8, zero point 0; per-channel weights (axis 0);
per-tensor activations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rn50.errors import UsageError
from rn50.onnx_graph import LAYER_OPS, consumers, producers, residual_adds, toposort
from rn50.words import cmd

if TYPE_CHECKING:
    from rn50.calibration.table import CalibrationTable

QMAX = 127.0


def shortcut_input(
    add: onnx.NodeProto, made_by: dict[str, onnx.NodeProto], read_by: dict[str, list[onnx.NodeProto]]
) -> str:
    """The residual Add input that is the shortcut, not the branch whose Conv TensorRT fuses with the Add.

    An identity shortcut is not produced by a Conv. A projection shortcut is a Conv too; it is the one whose
    input (the block's input) also feeds the main branch, while the main branch's last Conv reads a tensor
    nothing else reads.
    """
    a, b = add.input[0], add.input[1]
    conv_a = made_by.get(a) is not None and made_by[a].op_type == "Conv"
    conv_b = made_by.get(b) is not None and made_by[b].op_type == "Conv"
    if conv_a != conv_b:
        return b if conv_a else a
    if conv_a and conv_b:
        fan_a = len(read_by[made_by[a].input[0]])
        fan_b = len(read_by[made_by[b].input[0]])
        if fan_a != fan_b:
            return a if fan_a > fan_b else b
    raise UsageError(
        f"cannot tell the shortcut input of Add {add.name!r}", fix="the TensorRT target expects a ResNet-style graph"
    )


def _weight_scales(w: np.ndarray) -> np.ndarray:
    amax = np.abs(w.reshape(w.shape[0], -1)).max(1)
    return np.where(amax > 0, amax / QMAX, 1.0).astype(np.float32)


def emit(model: onnx.ModelProto, table: CalibrationTable, exclude: frozenset[str] = frozenset()) -> onnx.ModelProto:
    """A copy of the simplified FP32 ``model`` with TensorRT-style Q/DQ nodes (int8 weights + DQ).

    The Conv/Gemm nodes named in ``exclude`` keep float input and weights; a residual Add's shortcut is
    quantized only where the branch it meets is an INT8 Conv (the Q/DQ there exists for that fusion) and the Add is
    not named in ``exclude`` (then it runs in float, unfused: ``rn50.calibration.budget`` says when that pays).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {i.name: i for i in graph.initializer}
    new_nodes: list[onnx.NodeProto] = []
    activation_dq: dict[str, str] = {}

    def quantize_activation(tensor: str) -> str:
        if tensor in activation_dq:
            return activation_dq[tensor]
        if tensor not in table.ranges:
            raise UsageError(
                f"the calibration table has no range for {tensor!r}", fix=f"run {cmd('calibrate')} on this model"
            )
        scale = max(table.amax(tensor), 1e-8) / QMAX
        s, z = f"{tensor}_scale", f"{tensor}_zero_point"
        graph.initializer.extend(
            [numpy_helper.from_array(np.array(scale, np.float32), s), numpy_helper.from_array(np.array(0, np.int8), z)]
        )
        q, dq = f"{tensor}_QuantizeLinear_Output", f"{tensor}_DequantizeLinear_Output"
        new_nodes.append(helper.make_node("QuantizeLinear", [tensor, s, z], [q], name=f"{tensor}_QuantizeLinear"))
        new_nodes.append(helper.make_node("DequantizeLinear", [q, s, z], [dq], name=f"{tensor}_DequantizeLinear"))
        activation_dq[tensor] = dq
        return dq

    def quantize_weight(name: str, node: onnx.NodeProto) -> str:
        w = numpy_helper.to_array(inits[name])
        if node.op_type == "Gemm" and not any(a.name == "transB" and a.i == 1 for a in node.attribute):
            raise UsageError(
                f"Gemm {node.name!r} without transB is not supported", fix="export with torch (Linear gives transB=1)"
            )
        scales = _weight_scales(w)
        shape = (-1,) + (1,) * (w.ndim - 1)
        q = np.clip(np.round(w / scales.reshape(shape)), -QMAX, QMAX).astype(np.int8)
        qn, s, z = f"{name}_quantized", f"{name}_scale", f"{name}_zero_point"
        graph.initializer.extend(
            [
                numpy_helper.from_array(q, qn),
                numpy_helper.from_array(scales, s),
                numpy_helper.from_array(np.zeros(len(scales), np.int8), z),
            ]
        )
        dq = f"{name}_DequantizeLinear_Output"
        new_nodes.append(
            helper.make_node("DequantizeLinear", [qn, s, z], [dq], name=f"{name}_DequantizeLinear", axis=0)
        )
        return dq

    # Each residual Add's shortcut, decided on the float graph (rewiring changes the fan-out it reads).
    made_by, read_by = producers(graph), consumers(graph)
    shortcuts = [(n, shortcut_input(n, made_by, read_by)) for n in residual_adds(graph)]
    for node in graph.node:
        if node.op_type in LAYER_OPS and node.name not in exclude:
            node.input[0] = quantize_activation(node.input[0])
            if node.input[1] in inits:
                old = node.input[1]
                node.input[1] = quantize_weight(old, node)
                graph.initializer.remove(inits[old])
    for node, shortcut in shortcuts:
        idx = list(node.input).index(shortcut)
        branch = made_by.get(node.input[1 - idx])
        if node.name in exclude or (branch is not None and branch.name in exclude):
            continue  # the Add left out, or a float Conv that does not fuse it: the shortcut stays float
        node.input[idx] = quantize_activation(shortcut)
    graph.node.extend(new_nodes)
    toposort(graph)
    return out


FP16_OPSET = 19  # QuantizeLinear/DequantizeLinear take float16 scales from opset 19


def in_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """``--high-precision fp16``: the parts of a TensorRT Q/DQ file that are not INT8 in FP16 (scales included,
    so Q/DQ read and write FP16), with FP32 input and output — the form ModelOpt writes by default. Under
    strong typing TensorRT then runs those layers in FP16. ONNX Runtime's float16 converter does the work."""
    from onnx import version_converter
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from rn50.onnx_graph import opset_of

    if opset_of(model) < FP16_OPSET:
        model = version_converter.convert_version(model, FP16_OPSET)
    converted = convert_float_to_float16(model, keep_io_types=True)
    toposort(converted.graph)  # the converter appends its edge Casts at the end
    return converted
