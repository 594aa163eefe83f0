"""What goes into a model artifact and what comes out, read from the artifact itself: an ONNX file's graph header, an
OpenVINO IR through OpenVINO, a TensorRT engine's sidecar (TensorRT not needed). Triton's configurations are checked
against it; an engine's optimisation profile bounds the batches it takes."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rn50.errors import EnvironmentProblem

if TYPE_CHECKING:
    from pathlib import Path

TRT_DTYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "INT8": "int8",
    "INT32": "int32",
    "INT64": "int64",
    "UINT8": "uint8",
}


@dataclass(frozen=True)
class TensorIO:
    """One input or output, without its batch axis."""

    name: str
    dtype: str  # numpy name
    dims: tuple[int, ...]  # -1: dynamic


@dataclass(frozen=True)
class ModelIO:
    inputs: tuple[TensorIO, ...]
    outputs: tuple[TensorIO, ...]
    batch_range: tuple[int, int] | None = None  # an engine's profile (min, max); None: any batch
    batch_opt: int | None = None


def _dims(shape: list[Any]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d > 0 else -1 for d in shape[1:])


def onnx_io(path: Path) -> ModelIO:
    """Inputs and outputs of an ONNX file (its weights are not read)."""
    from onnx import helper

    from rn50.onnx_graph import load_header

    graph = load_header(path).graph
    inits = {i.name for i in graph.initializer}

    def io(values: Any) -> tuple[TensorIO, ...]:
        out = []
        for v in values:
            if v.name in inits:
                continue
            t = v.type.tensor_type
            dtype = str(helper.tensor_dtype_to_np_dtype(t.elem_type))
            out.append(
                TensorIO(v.name, dtype, _dims([d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]))
            )
        return tuple(out)

    return ModelIO(io(graph.input), io(graph.output))


def engine_io(engine: Path) -> ModelIO:
    """Inputs, outputs and batch range of an engine, from its sidecar (TensorRT is not needed)."""
    from rn50.runtimes.trt_plan import Sidecar, sidecar_path

    sidecar = Sidecar.load(sidecar_path(engine))
    inputs: list[TensorIO] = []
    outputs: list[TensorIO] = []
    for t in sidecar.io:
        dtype = TRT_DTYPES.get(str(t["dtype"]).rsplit(".", 1)[-1], str(t["dtype"]))
        (inputs if str(t["mode"]).endswith("INPUT") else outputs).append(
            TensorIO(t["name"], dtype, _dims(list(t["shape"])))
        )
    profile = sidecar.profiles[0]
    return ModelIO(
        tuple(inputs),
        tuple(outputs),
        (int(profile["input_min"][0]), int(profile["input_max"][0])),
        int(profile["input_opt"][0]),
    )


def pt2_io(package: Path) -> ModelIO:
    """Inputs, outputs and batch range of an AOTInductor package, from its sidecar (the package is not loaded)."""
    from rn50.runtimes.pt2_package import Pt2Sidecar, sidecar_path

    side = Pt2Sidecar.load(sidecar_path(package))
    return ModelIO(
        (TensorIO("input", "float32", (3, 224, 224)),),
        (TensorIO("logits", "float32", (side.classes or -1,)),),
        (1, side.max_batch),
    )


def ir_io(xml: Path) -> ModelIO:
    """Inputs and outputs of an OpenVINO IR, read by OpenVINO."""
    if importlib.util.find_spec("openvino") is None:
        raise EnvironmentProblem(
            "openvino is not installed: the IR's inputs cannot be read", fix="pip install 'rn50[openvino]'"
        )
    import openvino as ov

    from rn50.runtimes.openvino_runner import OV_TYPES, port_name

    model = ov.Core().read_model(str(xml))

    def io(ports: Any) -> tuple[TensorIO, ...]:
        return tuple(
            TensorIO(
                port_name(p),
                OV_TYPES.get(p.get_element_type().get_type_name(), "?"),
                _dims([d.get_length() if d.is_static else -1 for d in p.get_partial_shape()]),
            )
            for p in ports
        )

    return ModelIO(io(model.inputs), io(model.outputs))
