"""A Q/DQ file's integer form, read from the file: what its activations and weights are quantized to, and what
it was made for. The form decides whether a CPU's INT8 kernels compute the file as it says (``saturates``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from onnx import numpy_helper

from rn50.onnx_graph import producers

if TYPE_CHECKING:
    import onnx

# The Q/DQ targets: the integer forms rn50 writes, each named for what runs it (its own names, distinct in the code
# from the runtimes of the same names: a target is a form of ONNX file, a runtime is what runs one).
QDQ_TENSORRT = "tensorrt"  # symmetric int8, for TensorRT (and readable by every runtime)
QDQ_ONNXRUNTIME_CPU = "onnxruntime-cpu"  # uint8 activations, int8 weights, for ONNX Runtime's CPU kernels
QDQ_TARGETS = (QDQ_TENSORRT, QDQ_ONNXRUNTIME_CPU)
CPU_TARGETS = (QDQ_ONNXRUNTIME_CPU,)  # the targets made for a CPU class (--cpu)
TARGET_KEY = "rn50.qdq_target"
CPU_CLASS_KEY = "rn50.cpu_class"  # the onnxruntime-cpu file: the CPU class it was made for (rn50.machine.CPU_CLASSES)
# The largest |weight| of a "7-bit" file: ONNX Runtime's reduce_range quantizes int8 weights to [-64, 64], so that
# u8 × s8 pair sums stay within 16 bits (255 × 64 × 2 = 32,640 ≤ 32,767) on CPUs without VNNI.
SEVEN_BIT_MAX = 64


@dataclass(frozen=True)
class QdqForm:
    activations: str | None  # "uint8" or "int8" (the activation Q/DQ zero points), None: no activation Q/DQ
    weight_bits: int | None  # 8, or 7 when every int8 weight fits SEVEN_BIT_MAX; None: no int8 weight initializer
    target: str | None = None  # the Q/DQ target rn50 made it for (tensorrt, onnxruntime-cpu), None: another tool's
    cpu_class: str | None = None  # the CPU class rn50 made it for (onnxruntime-cpu files)

    def describe(self) -> str:
        parts = [f"{self.activations or '–'} activations", f"{self.weight_bits or '–'}-bit weights"]
        if self.target:
            parts.append(f"made for {self.target}" + (f" on {self.cpu_class}-class CPUs" if self.cpu_class else ""))
        return ", ".join(parts)


def form_of(model: onnx.ModelProto) -> QdqForm:
    """The form of a Q/DQ model (rn50's, ONNX Runtime's or ModelOpt's). A weight quantized at run time (ModelOpt's
    float initializer → QuantizeLinear) counts as 8-bit: its integers are not in the file."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    made_by = producers(graph)
    activation_types: set[str] = set()
    weight_max = -1
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        source = node.input[0]
        if source in inits:
            q = numpy_helper.to_array(inits[source])
            if q.dtype == np.int8 and q.ndim > 1:  # a weight (1-D int32/int8 initializers are biases or scalars)
                weight_max = max(weight_max, int(np.abs(q.astype(np.int32)).max(initial=0)))
            continue
        quantize = made_by.get(source)
        if quantize is not None and quantize.op_type == "QuantizeLinear":
            if quantize.input[0] in inits:
                weight_max = max(weight_max, 127)  # ModelOpt's weight form
                continue
            zp = inits.get(quantize.input[2]) if len(quantize.input) > 2 else None
            activation_types.add(str(numpy_helper.to_array(zp).dtype) if zp is not None else "uint8")
    meta = {p.key: p.value for p in model.metadata_props}
    activations = "uint8" if "uint8" in activation_types else ("int8" if activation_types else None)
    bits = None if weight_max < 0 else (7 if weight_max <= SEVEN_BIT_MAX else 8)
    return QdqForm(activations, bits, meta.get(TARGET_KEY), meta.get(CPU_CLASS_KEY))
