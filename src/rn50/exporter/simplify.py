"""Checker, shape inference and onnxsim; opset conversion below the exporter's native opset."""

from __future__ import annotations

import logging

import onnx
import onnx.version_converter

from rn50.errors import CheckFailed
from rn50.onnx_graph import opset_of
from rn50.words import opt

log = logging.getLogger(__name__)


def check(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnx.checker (full) and strict shape inference; returns the model with inferred shapes."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        onnx.checker.check_model(inferred)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise CheckFailed(
            f"the ONNX model fails the checker: {str(e).splitlines()[0]}",
            fix=f"report this with {opt('verbose')} output",
        ) from e
    return inferred


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant folding, BatchNorm fusion and dead-code removal by onnxsim, checked before and after."""
    import onnxsim

    try:
        simplified, ok = onnxsim.simplify(model, check_n=0)
    except Exception as e:  # onnxsim raises RuntimeError/ValueError from its C++ core
        raise CheckFailed(
            f"onnxsim failed: {str(e).splitlines()[0]}", fix=f"pass {opt('simplify', False)} to keep the exported graph"
        ) from e
    if not ok:
        raise CheckFailed("onnxsim could not validate the simplified model", fix=f"pass {opt('simplify', False)}")
    return check(simplified)


def convert_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    if opset_of(model) == opset:
        return model
    try:
        converted = onnx.version_converter.convert_version(model, opset)
    except Exception as e:  # the converter raises RuntimeError with an adapter assertion
        raise CheckFailed(
            f"cannot convert the model from opset {opset_of(model)} to {opset}: {str(e).splitlines()[0]}",
            fix=f"pass {opt('opset')} 18",
        ) from e
    if opset < 18:
        # onnx's 18->17 adapter moves Reduce* axes back to an attribute but keeps the opset-18-only
        # attribute noop_with_empty_axes; at its default (0) dropping it changes nothing.
        for node in converted.graph.node:
            if node.op_type.startswith("Reduce") and node.op_type != "ReduceSum":
                keep = [a for a in node.attribute if not (a.name == "noop_with_empty_axes" and a.i == 0)]
                del node.attribute[:]
                node.attribute.extend(keep)
    return check(converted)
