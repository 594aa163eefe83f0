"""The stand-in's engine build, plan format, inspector output and execution (see ``__init__``'s docstring
for what is emulated). Private: rn50 reaches it only through the public API in ``__init__``."""

from __future__ import annotations

import ctypes
import json
import struct
from typing import TYPE_CHECKING, Any

import numpy as np

import tensorrt as _trt

if TYPE_CHECKING:
    from tensorrt import ICudaEngine, IExecutionContext, ILogger

PLAN_MAGIC = b"RN50-STANDIN-PLAN\0"
HEAD = struct.Struct("<QQ")
FORMATS = {  # the 10.x inspector's format strings (TensorRT Developer Guide, "Engine Inspector")
    "Int8": "Thirty-two wide channel vectorized row major Int8 format",
    "Half": "Channel major FP16 format where channel % 8 == 0",
    "Float": "Row major linear FP32",
}
ITEMSIZE = {"Int8": 1, "Half": 2, "Float": 4}
LAYER_TYPES = {
    "Conv": "CaskConvolution",
    "Gemm": "CaskGemmMatrixMultiply",
    "MatMul": "CaskGemmMatrixMultiply",
    "MaxPool": "CaskPooling",
    "AveragePool": "CaskPooling",
    "GlobalAveragePool": "CaskPooling",
    "Relu": "PointWiseV2",
    "Add": "PointWiseV2",
    "Cast": "Cast",
    "Flatten": "Shuffle",
    "Reshape": "Shuffle",
}
NOT_LAYERS = ("QuantizeLinear", "DequantizeLinear", "Constant", "Identity")


def _error(logger: ILogger, msg: str) -> None:
    logger.log(_trt.ILogger.Severity.ERROR, msg)


def _major(version: str) -> int:
    return int(version.split(".")[0])


def _cc(value: str) -> tuple[int, int]:
    a, b = value.split(".")
    return int(a), int(b)


# --- the network as the stand-in sees it --------------------------------------------------------------
class Graph:
    def __init__(self, model: Any) -> None:
        import onnx

        inferred = onnx.shape_inference.infer_shapes(model)
        self.nodes = list(model.graph.node)
        self.shapes: dict[str, list[int]] = {}
        self.types: dict[str, int] = {}
        for v in [*inferred.graph.input, *inferred.graph.output, *inferred.graph.value_info]:
            t = v.type.tensor_type
            self.shapes[v.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            self.types[v.name] = t.elem_type
        for init in model.graph.initializer:
            self.shapes[init.name] = list(init.dims)
            self.types[init.name] = init.data_type
        self.inputs = {v.name for v in model.graph.input}
        self.dq = {n.output[0]: n for n in self.nodes if n.op_type == "DequantizeLinear"}
        self.consumers: dict[str, list[Any]] = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def precision(self, node: Any) -> str:
        """Strong typing: a Conv/Gemm is INT8 when both its input and its weights come out of Q/DQ, FP16 when
        its input is float16, FP32 otherwise."""
        x = node.input[0]
        weighted = node.op_type in ("Conv", "Gemm", "MatMul")
        if x in self.dq and (not weighted or (len(node.input) > 1 and node.input[1] in self.dq)):
            return "Int8"
        return "Half" if self.types.get(x) == 10 else "Float"

    def sole_consumer(self, tensor: str) -> Any | None:
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 else None

    def groups(self) -> list[list[Any]]:
        """Layers as TensorRT fuses them: Conv + ReLU, Conv + residual Add (+ ReLU)."""
        fused: set[int] = set()
        out = []
        for node in self.nodes:
            if node.op_type in NOT_LAYERS and not (node.op_type == "QuantizeLinear" and node.input[0] in self.inputs):
                continue
            if id(node) in fused:
                continue
            group = [node]
            if node.op_type == "Conv":
                nxt = self.sole_consumer(node.output[0])
                if nxt is not None and nxt.op_type == "Add" and id(nxt) not in fused:
                    group.append(nxt)
                    nxt = self.sole_consumer(nxt.output[0])
                if nxt is not None and nxt.op_type == "Relu":
                    group.append(nxt)
            fused.update(id(n) for n in group)
            out.append(group)
        return out

    def workspace(self, node: Any, precision: str, max_batch: int) -> int:
        """Emulated scratch a convolution needs: its im2col buffer at the profile's largest batch."""
        if node.op_type != "Conv":
            return 0
        w, y = self.shapes.get(node.input[1], []), self.shapes.get(node.output[0], [])
        if len(w) != 4 or len(y) != 4:
            return 0
        return int(np.prod(w[1:])) * y[2] * y[3] * ITEMSIZE[precision] * max_batch


def _io_entry(graph: Graph, tensor: str, precision: str, version: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"Name": tensor, "Location": "Device", "Dimensions": graph.shapes.get(tensor, [])}
    if _major(version) >= 11:  # 11.x splits the format and the data type (migration guide, "I/O Tensors")
        entry |= {"Format": FORMATS[precision], "DataType": precision}
    else:
        entry["Format/Datatype"] = FORMATS[precision]
    return entry


def layer_table(graph: Graph, version: str) -> tuple[list[dict[str, Any]], int, list[str]]:
    """(inspector layers, emulated workspace need at batch 1, timing-cache keys)."""
    layers, need, keys = [], 0, []
    for group in graph.groups():
        head, tail = group[0], group[-1]
        precision = graph.precision(head)
        out_precision = "Int8" if head.op_type == "QuantizeLinear" else precision
        layer: dict[str, Any] = {
            "Name": " + ".join(n.name or n.op_type for n in group),
            "LayerType": "Scale" if head.op_type == "QuantizeLinear" else LAYER_TYPES.get(head.op_type, head.op_type),
            "Inputs": [
                _io_entry(graph, head.input[0], "Float" if head.op_type == "QuantizeLinear" else precision, version)
            ],
            "Outputs": [_io_entry(graph, tail.output[0], out_precision, version)],
            "TacticName": f"standin_{precision.lower()}_{head.op_type.lower()}",
            "StreamId": 0,
            "Metadata": "\x1f".join(f"[ONNX Layer: {n.name}]" for n in group),
        }
        if head.op_type == "Conv":
            w = graph.shapes.get(head.input[1], [])
            attrs = {a.name: list(a.ints) or a.i for a in head.attribute}
            layer |= {
                "ParameterType": "Convolution",
                "Kernel": w[2:],
                "Stride": attrs.get("strides", [1, 1]),
                "OutMaps": w[0] if w else 0,
                "Groups": attrs.get("group", 1) or 1,
                "Weights": {"Type": precision, "Count": int(np.prod(w)) if w else 0},
                "Activation": "RELU" if tail.op_type == "Relu" else "NONE",
            }
        layers.append(layer)
        need = max(need, graph.workspace(head, precision, 1))
        keys.append(f"{layer['LayerType']}|{precision}|{graph.shapes.get(head.input[0])}|{layer.get('Kernel')}")
    return layers, need, keys


# --- build -------------------------------------------------------------------------------------------
def build(network: Any, config: Any, logger: ILogger) -> Any:
    model = network._model
    if model is None:
        _error(logger, "Network must have at least one output (nothing was parsed into the network)")
        return None
    if not network.flags & (1 << int(_trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)):
        _error(logger, "rn50 stand-in: only strongly typed networks are emulated (TensorRT 11 has no other kind)")
        return None
    profiles = config._profiles
    profile: dict[str, list[list[int]]] = {}
    for t in network._inputs:
        shape = list(t.shape)
        if all(d >= 0 for d in shape):
            profile[t.name] = [shape, shape, shape]
            continue
        if not profiles:
            _error(
                logger,
                "Error Code 4: API Usage Error (Network has dynamic or shape inputs, but no optimization profile "
                "has been defined.)",
            )
            return None
        dims = profiles[0].get_shape(t.name)
        if not dims:
            _error(
                logger, f"Error Code 4: API Usage Error ({t.name}: dynamic input is missing dimensions in profile 0.)"
            )
            return None
        lo, opt, hi = ([int(x) for x in d] for d in dims)
        if (
            len(lo) != len(shape)
            or any(s >= 0 and s != d for s, d in zip(shape, hi, strict=True))
            or any(s >= 0 and s != d for s, d in zip(shape, lo, strict=True))
        ):
            _error(
                logger,
                f"Error Code 4: API Usage Error ({t.name}: profile dimensions {lo}..{hi} do not match the network "
                f"input {shape})",
            )
            return None
        profile[t.name] = [lo, opt, hi]
    graph = Graph(model)
    version = _trt.__version__
    layers, need_per_image, keys = layer_table(graph, version)
    max_batch = max((p[2][0] for p in profile.values() if p[2]), default=1)
    need = need_per_image * max_batch
    limit = config.get_memory_pool_limit(_trt.MemoryPoolType.WORKSPACE)
    if need > limit:
        worst = next(x["Name"] for x in layers if x["LayerType"] == "CaskConvolution")
        _error(
            logger,
            f"Error Code 10: Internal Error (Could not find any implementation for node {worst} due to insufficient "
            f"workspace. See verbose log for requested sizes. Requested {need} bytes, pool limit {limit} bytes.)",
        )
        return None
    monitor = config.progress_monitor
    if monitor is not None:
        monitor.phase_start("Building engine", None, len(layers))
        for step in range(len(layers)):
            if not monitor.step_complete("Building engine", step):
                _error(logger, "Error Code 4: Internal Error (Engine build was cancelled by the progress monitor.)")
                return None
        monitor.phase_finish("Building engine")
    cache = config.get_timing_cache()
    hits = sum(k in cache._entries for k in keys)
    cache._entries.update({k: f"tactic-{i}" for i, k in enumerate(keys) if k not in cache._entries})
    logger.log(_trt.ILogger.Severity.INFO, f"Timing cache: {hits} hits, {len(keys) - hits} misses")
    mark = _trt.__rn50_standin__
    io = [
        {"name": t.name, "mode": mode, "dtype": t.dtype.name, "shape": list(t.shape)}
        for mode, tensors in (("INPUT", network._inputs), ("OUTPUT", network._outputs))
        for t in tensors
    ]
    header = {
        "tensorrt": version,
        "compute_capability": mark.compute_capability,
        "gpu": mark.gpu_name,
        "hardware_compatibility_level": config.hardware_compatibility_level.name,
        "version_compatible": config.get_flag(_trt.BuilderFlag.VERSION_COMPATIBLE),
        "verbosity": config.profiling_verbosity.name,
        "profile": profile,
        "io": io,
        "layers": layers,
        "workspace": need,
        "optimization_level": config.builder_optimization_level,
    }
    return _trt.IHostMemory(write_plan(header, model.SerializeToString()))


def write_plan(header: dict[str, Any], onnx_bytes: bytes) -> bytes:
    head = json.dumps(header, sort_keys=True).encode()
    return PLAN_MAGIC + HEAD.pack(len(head), len(onnx_bytes)) + head + onnx_bytes


def read_plan(data: bytes, logger: ILogger) -> tuple[dict[str, Any], bytes, ILogger] | None:
    if not data.startswith(PLAN_MAGIC):
        _error(
            logger,
            "IRuntime::deserializeCudaEngine: Error Code 1: Serialization (Serialization assertion "
            "magicTagRead == kMAGIC_TAG failed.Magic tag does not match)",
        )
        return None
    start = len(PLAN_MAGIC) + HEAD.size
    try:
        n_head, n_onnx = HEAD.unpack_from(data, len(PLAN_MAGIC))
        if len(data) != start + n_head + n_onnx:
            raise ValueError(f"plan is {len(data)} bytes, header says {start + n_head + n_onnx}")
        header = json.loads(data[start : start + n_head])
    except (struct.error, ValueError) as e:
        _error(
            logger,
            f"IRuntime::deserializeCudaEngine: Error Code 1: Serialization (Serialization assertion failed: {e})",
        )
        return None
    here, built = _trt.__version__, header["tensorrt"]
    compatible = here == built or (
        header["version_compatible"]
        and _major(here) == _major(built)
        and tuple(map(int, here.split("."))) >= tuple(map(int, built.split(".")))
    )
    if not compatible:
        _error(
            logger,
            f"IRuntime::deserializeCudaEngine: Error Code 6: API Usage Error (The engine plan file is not compatible "
            f"with this version of TensorRT, expecting library version {here} got {built}, please rebuild.)",
        )
        return None
    cc_here, cc_built = _trt.__rn50_standin__.compute_capability, header["compute_capability"]
    level = header["hardware_compatibility_level"]
    fits = _cc(cc_here) >= (8, 0) if level == "AMPERE_PLUS" else cc_here == cc_built
    if not fits:
        _error(
            logger,
            f"IRuntime::deserializeCudaEngine: Error Code 6: API Usage Error (The engine plan file is generated on an "
            f"incompatible device, expecting compute {cc_here} got compute {cc_built}, please rebuild.)",
        )
        return None
    return header, data[start + n_head :], logger


# --- inspector ---------------------------------------------------------------------------------------
def engine_information(header: dict[str, Any], fmt: Any) -> str:
    layers, verbosity = header["layers"], header["verbosity"]
    if verbosity == "NONE":
        layers = []
    elif verbosity == "LAYER_NAMES_ONLY":
        layers = [x["Name"] for x in layers]
    if fmt != _trt.LayerInformationFormat.JSON:
        return "\n".join(x if isinstance(x, str) else x["Name"] for x in layers)
    out: dict[str, Any] = {"Layers": layers}
    if _major(header["tensorrt"]) >= 11:
        out["I/O Tensors"] = [
            {
                "Name": t["name"],
                "IOMode": t["mode"].title(),
                "DataType": "Float" if t["dtype"] == "FLOAT" else t["dtype"].title(),
                "Dimensions": t["shape"],
                "Location": "Device",
                "IsShapeInferenceIO": False,
                "ProfileInfo": [
                    {
                        "MinShape": p[0],
                        "OptShape": p[1],
                        "MaxShape": p[2],
                        "Format": "Row major linear FP32 format (kLINEAR)",
                    }
                    for p in [header["profile"].get(t["name"], [t["shape"]] * 3)]
                ],
            }
            for t in header["io"]
        ]
    else:
        out["Bindings"] = [t["name"] for t in header["io"]]
    return json.dumps(out, indent=2)


# --- execution ---------------------------------------------------------------------------------------
def address_view(address: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """The numpy view of ``shape``/``dtype`` at a host address (a 'device pointer' under the stand-in)."""
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(address)).view(dt).reshape(shape)


def execute(context: IExecutionContext, stream_handle: int) -> bool:
    engine: ICudaEngine = context.engine
    logger = engine._logger
    feed = {}
    for t in engine._io:
        name = t["name"]
        if name not in context._addresses:
            _error(
                logger,
                f"IExecutionContext::enqueueV3: Error Code 3: API Usage Error (Address of tensor {name} was not set)",
            )
            return False
        if t["mode"] == "INPUT":
            if name not in context._shapes:
                _error(
                    logger,
                    f"IExecutionContext::enqueueV3: Error Code 3: API Usage Error (input shape of {name} was not set)",
                )
                return False
            feed[name] = address_view(
                context._addresses[name], context._shapes[name], _trt.nptype(_trt.DataType[t["dtype"]])
            ).copy()
    if engine._session is None:
        import onnxruntime

        engine._session = onnxruntime.InferenceSession(engine._onnx, providers=["CPUExecutionProvider"])
    names = [t["name"] for t in engine._io if t["mode"] == "OUTPUT"]
    for name, value in zip(names, engine._session.run(names, feed), strict=True):
        shape = tuple(context.get_tensor_shape(name))
        dtype = _trt.nptype(engine.get_tensor_dtype(name))
        address_view(context._addresses[name], shape, dtype)[...] = value.astype(dtype, copy=False)
    return True
