"""Small models built in the tests (seconds, not minutes): a Q/DQ convolution whose INT8 arithmetic saturates on CPUs
without VNNI. Imported by the tests as ``tiny``; never part of the package."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

if TYPE_CHECKING:
    from pathlib import Path

    import torch

SATURATING_CHANNELS, SATURATING_OUT = 64, 16


def saturating_conv(weight_bits: int, *, target: str = "onnxruntime-cpu") -> tuple[onnx.ModelProto, np.ndarray]:
    """A 1×1 Q/DQ convolution and its feed: uint8 activations and int8 per-channel weights (the onnxruntime-cpu
    form), or with ``target`` "tensorrt" int8 activations (zero point 0), as rn50's TensorRT file has them.

    With 8-bit weights its u8×s8 pairs sum past 16 bits (255 × 127 × 2 > 32,767): CPUs without VNNI saturate them
    (``vpmaddubsw``) and compute something else than the file says; with 7-bit weights (|w| ≤ 64) every pair fits,
    as with ONNX Runtime's reduce_range. Per output channel the first half of the input channels has large positive
    weights (pairs past 16 bits) and the second half moderate negative ones (within 16 bits), in a ratio that differs
    per channel, so saturation changes the direction of the output, not only its size."""
    lim = 127 if weight_bits == 8 else 64
    c, k = SATURATING_CHANNELS, SATURATING_OUT
    w = np.empty((k, c, 1, 1), np.int8)
    w[:, : c // 2] = lim
    w[:, c // 2 :, 0, 0] = -np.round(lim * np.linspace(0.25, 0.5, k))[:, None]
    x = np.random.default_rng(0).uniform(0.8, 1.0, size=(4, c, 4, 4)).astype(np.float32)
    levels, act = (127, np.int8) if target == "tensorrt" else (255, np.uint8)
    y = np.einsum("nchw,kc->nkhw", np.round(x * levels) / levels, w[:, :, 0, 0].astype(np.float64) / 127)
    init = [
        numpy_helper.from_array(np.array(1 / levels, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, act), "x_zero"),
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.full(k, 1 / 127, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(k, np.int8), "w_zero"),
        numpy_helper.from_array(np.array(np.abs(y).max() / 127, np.float32), "y_scale"),
        numpy_helper.from_array(np.array(0 if target == "tensorrt" else 128, act), "y_zero"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "x_scale", "x_zero"], ["xq"], name="q_in"),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"], name="dq_in"),
        helper.make_node("DequantizeLinear", ["w", "w_scale", "w_zero"], ["wd"], name="dq_w", axis=0),
        helper.make_node("Conv", ["xd", "wd"], ["y"], name="conv"),
        helper.make_node("QuantizeLinear", ["y", "y_scale", "y_zero"], ["yq"], name="q_out"),
        helper.make_node("DequantizeLinear", ["yq", "y_scale", "y_zero"], ["logits"], name="dq_out"),
    ]
    graph = helper.make_graph(
        nodes,
        "saturating_conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", c, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", k, 4, 4])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.metadata_props.add(key="rn50.precision", value="int8")
    model.metadata_props.add(key="rn50.qdq_target", value=target)
    if target == "onnxruntime-cpu":
        model.metadata_props.add(key="rn50.cpu_class", value="vnni" if weight_bits == 8 else "avx2")
    return model, x


def small_convnet() -> onnx.ModelProto:
    """An FP32 ONNX model of ResNet-50's shape in miniature: input (N,3,8,8) → 3 × (Conv → Relu) → GlobalAveragePool →
    Flatten → Gemm (transB, the classifier ``fc``) → logits (N,10)."""
    rng = np.random.default_rng(0)
    inits, nodes, x = [], [], "input"
    for i, (cin, cout) in enumerate([(3, 8), (8, 8), (8, 8)]):
        inits += [
            numpy_helper.from_array((rng.standard_normal((cout, cin, 3, 3)) * 0.3).astype(np.float32), f"w{i}"),
            numpy_helper.from_array((rng.standard_normal(cout) * 0.1).astype(np.float32), f"b{i}"),
        ]
        nodes += [
            helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"),
        ]
        x = f"r{i}"
    inits += [
        numpy_helper.from_array(rng.standard_normal((10, 8)).astype(np.float32), "fw"),
        numpy_helper.from_array(np.zeros(10, np.float32), "fb"),
    ]
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fw", "fb"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def activation_ranges(model: onnx.ModelProto, crops: np.ndarray) -> dict[str, tuple[float, float]]:
    """A calibration table's ranges for a float model: min/max of the input and of every node's output on ``crops``."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    outputs = [o.name for o in probe.graph.output]
    names = [t for n in probe.graph.node for t in n.output if t not in outputs]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    values = dict(zip([*outputs, *names], session.run(None, {"input": crops}), strict=True)) | {"input": crops}
    return {n: (float(v.min()), float(v.max())) for n, v in values.items()}


# --- a tiny model of ResNet-50's shape, and a work directory of it --------------------------------------------------
TINY_ONNX = "tiny.fp32.onnx"


def tiny_net() -> torch.nn.Module:
    """A convolutional net of ResNet-50's outline in miniature, on the same 3×224×224 inputs and 1000 logits: a
    stride-4 stem, one residual block (shortcut added to a Conv branch, as TensorRT fuses it), a global average pool
    and a classifier. Deterministic weights; built and run in milliseconds."""
    import torch
    from torch import nn

    class TinyNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 7, stride=4, padding=3)
            self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
            self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
            self.fc = nn.Linear(8, 1000)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.stem(x))
            y = self.conv2(torch.relu(self.conv1(x)))
            x = torch.relu(x + y)
            return self.fc(torch.flatten(torch.mean(x, dim=(2, 3), keepdim=True), 1))

    torch.manual_seed(0)
    net = TinyNet().eval()
    with torch.no_grad():  # a classifier whose answer depends on the image (a fresh one picks the same class for all)
        net.fc.bias.zero_()
        net.fc.weight.mul_(8.0)
    return net


def tiny_onnx(net: torch.nn.Module) -> onnx.ModelProto:
    """``net`` as ONNX, written node by node from its weights (no exporter: milliseconds), input ``input``
    (N,3,224,224), output ``logits`` (N,1000), with rn50's metadata."""
    w = {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    init = [numpy_helper.from_array(v, k) for k, v in w.items()]
    conv = {"stem": (3, 4), "conv1": (1, 1), "conv2": (1, 1)}  # name -> (pad, stride)
    nodes = [
        helper.make_node(
            "Conv",
            ["input", "stem.weight", "stem.bias"],
            ["stem_out"],
            name="stem",
            pads=[conv["stem"][0]] * 4,
            strides=[4, 4],
            kernel_shape=[7, 7],
        ),
        helper.make_node("Relu", ["stem_out"], ["relu0"], name="relu0"),
        helper.make_node(
            "Conv", ["relu0", "conv1.weight", "conv1.bias"], ["c1"], name="conv1", pads=[1] * 4, kernel_shape=[3, 3]
        ),
        helper.make_node("Relu", ["c1"], ["relu1"], name="relu1"),
        helper.make_node(
            "Conv", ["relu1", "conv2.weight", "conv2.bias"], ["c2"], name="conv2", pads=[1] * 4, kernel_shape=[3, 3]
        ),
        helper.make_node("Add", ["relu0", "c2"], ["sum"], name="add"),
        helper.make_node("Relu", ["sum"], ["relu2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["relu2"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    model.metadata_props.add(key="rn50.precision", value="fp32")
    onnx.checker.check_model(model)
    return model


def write_tiny_workdir(root: Path) -> torch.nn.Module:
    """A work directory holding the tiny net as its verified FP32 ONNX file, as ``rn50 export`` would record it; the
    net itself is returned (tests hand it to rn50 in place of the ResNet-50 ``workdir_model`` builds)."""
    from rn50.artifacts import Artifact, WorkDir, sha256_file
    from rn50.weights import state_fingerprint

    net = tiny_net()
    root.mkdir(parents=True, exist_ok=True)
    onnx.save(tiny_onnx(net), str(root / TINY_ONNX))
    fingerprint = state_fingerprint(net)
    WorkDir(root).record(
        Artifact(
            "onnx-fp32",
            TINY_ONNX,
            "onnx",
            "fp32",
            sha256_file(root / TINY_ONNX),
            fingerprint,
            {"model": "tiny"},
            {},
            verified=True,
        ),
        model={"depth": 50, "weights": "tiny", "weights_sha256": fingerprint},
    )
    return net
