"""Q/DQ for ONNX Runtime on the CPU, by ONNX Runtime's own quantizer fed with rn50's calibration table:
uint8 activations (asymmetric), int8 per-channel weights. On x86 ONNX Runtime runs this u8/s8 form
through its fused QLinearConv kernels, several times faster than FP32; the symmetric s8/s8 form is not.

The file is made for a CPU class (``rn50.machine.CPU_CLASSES``). On x86 CPUs without VNNI the kernels sum
u8×s8 pairs in a saturating 16-bit intermediate, so the ``avx2`` file has 7-bit weights (ONNX Runtime's
``reduce_range``: [-64, 64], 255 × 64 × 2 ≤ 32,767), which every x86 CPU computes as the file says; the ``vnni``
file keeps full-range weights, more accurate where pairs are summed in 32 bits. Measured: README, "INT8 on
every CPU"."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rn50.machine import AVX2, VNNI
from rn50.onnx_graph import toposort

if TYPE_CHECKING:
    from rn50.calibration.table import CalibrationTable

ACTIVATION_TYPE = "QUInt8"  # onnxruntime.quantization.QuantType member (benchmarks/bench_int8_budget.py tries QInt8)


def emit(
    model: onnx.ModelProto, table: CalibrationTable, exclude: frozenset[str] = frozenset(), *, cpu_class: str = VNNI
) -> onnx.ModelProto:
    """A copy of ``model`` in ONNX Runtime's Q/DQ form for CPUs of ``cpu_class``; the nodes in ``exclude`` are its
    ``nodes_to_exclude``."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    with tempfile.TemporaryDirectory(prefix="rn50-ort-q-") as tmp:
        src = Path(tmp) / "fp32.onnx"
        onnx.save_model(model, str(src))
        prepared = load_model_with_shape_infer(src)
    ranges = TensorsData(
        CalibrationMethod.MinMax,
        {
            k: TensorData(lowest=np.array(lo, np.float32), highest=np.array(hi, np.float32))
            for k, (lo, hi) in table.ranges.items()
        },
    )
    # Keywords, not positions: QDQQuantizer is ONNX Runtime's internal class, and a renamed or reordered
    # parameter must fail loudly rather than bind a value to the wrong meaning.
    quantizer = QDQQuantizer(
        model=prepared,
        per_channel=True,
        reduce_range=cpu_class == AVX2,  # 7-bit weights: no saturation without VNNI
        weight_qType=QuantType.QInt8,
        activation_qType=getattr(QuantType, ACTIVATION_TYPE),
        tensors_range=ranges,
        nodes_to_quantize=[],  # all
        nodes_to_exclude=sorted(exclude),
        op_types_to_quantize=[
            "Conv",
            "Gemm",
            "Relu",
            "Add",
            "MaxPool",
            "GlobalAveragePool",
            "ReduceMean",
            "Reshape",
            "Flatten",
        ],
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
    )
    quantizer.quantize_model()
    model = quantizer.model.model
    if exclude:
        read_float_inputs(model.graph, exclude)
    toposort(model.graph)
    return model


def read_float_inputs(graph: onnx.GraphProto, names: frozenset[str]) -> None:
    """The named nodes read their activations before the Q/DQ pair in front of them.

    ``nodes_to_exclude`` alone keeps a node's weights float but still rounds its input: ONNX Runtime's
    quantizer puts Q/DQ on every tensor a quantized neighbour touches (measured on the seeded ResNet-50: every
    Conv/Gemm excluded leaves the logits at cosine mean 0.9971). Where that Q is uint8 with zero point 0 it
    also stands for a ReLU the quantizer removed (the clip at 0 does its work), so the float path gets the
    ReLU back. Q/DQ nodes nothing reads any more are removed.
    """
    from rn50.onnx_graph import producers

    made_by = producers(graph)
    inits = {i.name: i for i in graph.initializer}
    relus: dict[str, str] = {}
    for node in list(graph.node):
        if node.name not in names:
            continue
        for i, tensor in enumerate(node.input):
            dq = made_by.get(tensor)
            q = made_by.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is None or q.op_type != "QuantizeLinear":
                continue
            source = q.input[0]
            zp = numpy_helper.to_array(inits[q.input[2]]) if len(q.input) > 2 and q.input[2] in inits else None
            if zp is not None and zp.dtype == np.uint8 and not zp.any():
                if source not in relus:
                    relus[source] = f"{source}__relu"
                    graph.node.append(helper.make_node("Relu", [source], [relus[source]], name=f"{source}__Relu"))
                source = relus[source]
            node.input[i] = source
    while True:
        read = {t for n in graph.node for t in n.input} | {o.name for o in graph.output}
        dead = [
            n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") and not set(n.output) & read
        ]
        if not dead:
            return
        for n in dead:
            graph.node.remove(n)
