"""Q/DQ for ONNX Runtime on the CPU, by ONNX Runtime's own quantizer fed with rn50's calibration table:
uint8 activations (asymmetric), int8 per-channel weights. On x86 ONNX Runtime runs this u8/s8 form
through its fused QLinearConv kernels, several times faster than FP32; the symmetric s8/s8 form is not."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from rn50.exporter.graph import toposort

if TYPE_CHECKING:
    from rn50.calibration.table import CalibrationTable


def emit(model: onnx.ModelProto, table: CalibrationTable) -> onnx.ModelProto:
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
        {k: TensorData(lowest=np.array(lo, np.float32), highest=np.array(hi, np.float32)) for k, (lo, hi) in table.ranges.items()},
    )
    # Keywords, not positions: QDQQuantizer is ONNX Runtime's internal class, and a renamed or reordered
    # parameter must fail loudly rather than bind a value to the wrong meaning.
    quantizer = QDQQuantizer(
        model=prepared,
        per_channel=True,
        reduce_range=False,
        weight_qType=QuantType.QInt8,
        activation_qType=QuantType.QUInt8,
        tensors_range=ranges,
        nodes_to_quantize=[],  # all
        nodes_to_exclude=[],
        op_types_to_quantize=["Conv", "Gemm", "Relu", "Add", "MaxPool", "GlobalAveragePool", "ReduceMean", "Reshape", "Flatten"],
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
    )
    quantizer.quantize_model()
    model = quantizer.model.model
    toposort(model.graph)
    return model
