"""rn50's TensorRT stand-in: NOT TensorRT. A test double that lets every line of rn50's TensorRT code run
on machines where TensorRT cannot be installed (no NVIDIA libraries, no GPU).

What it is:
- exactly the slice of the TensorRT 10.12+/11.x Python API that rn50 uses, with the names and signatures
  of ``tensorrt-stubs`` (a test checks every public name against them), and none of the APIs TensorRT 11
  removed (``BuilderFlag.FP16``/``INT8``, ``int8_calibrator``, ``EXPLICIT_BATCH``, ...), so using one
  fails here as it would on 11.x;
- behaviour taken from NVIDIA's documentation and TensorRT's own log messages: strongly typed networks
  (precision comes from the ONNX file), ``IParserError``-style parser errors for unsupported operators
  and malformed Q/DQ, optimisation-profile checks, the workspace pool, the progress monitor (and its
  cancel), the timing cache, plans that record the TensorRT version and compute capability and are
  refused elsewhere, the engine inspector's JSON (layout of the Developer Guide's "Engine Inspector"
  example for 10.x; the 11.x "I/O Tensors" entry of NVIDIA's 10.x-to-11.x inspector migration guide);
- execution through ONNX Runtime CPU on the ONNX file the "engine" was built from, reading and writing
  the buffers at the addresses given to ``set_tensor_address`` (host memory from its own device seam).

What it is not: a model of TensorRT's acceptance of a network, its kernels, numerics, fusions or speed.
It proves rn50's calls, their order and rn50's handling of TensorRT's answers. Everything it produces is
labelled ``tensorrt-standin`` by rn50 (it announces itself through ``__rn50_standin__``).

Emulated on purpose, and documented as such: the GPU (name and compute capability in
``__rn50_standin__``, changeable by tests), the workspace a convolution needs (its im2col buffer at the
profile's largest batch), and the layer fusions (Conv + residual Add + ReLU, as TensorRT fuses them).
"""

from __future__ import annotations

import enum
import json
import sys
from typing import Any

import numpy as np

__version__ = "10.13.0.35"  # the API version of the tensorrt-stubs this stand-in is checked against

_CACHE_MAGIC = b"RN50-STANDIN-TIMING\0"


# --- enums ---------------------------------------------------------------------------------------------
class _Enum(enum.Enum):
    """pybind11-style enum: ``int(x)``, ``str(x) == "Type.NAME"``."""

    def __int__(self) -> int:
        return int(self.value)

    def __str__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


class DataType(_Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    FP8 = 6
    BF16 = 7
    INT64 = 8
    INT4 = 9


class TensorIOMode(_Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class MemoryPoolType(_Enum):
    WORKSPACE = 0
    TACTIC_DRAM = 4
    TACTIC_SHARED_MEMORY = 5


class ProfilingVerbosity(_Enum):
    LAYER_NAMES_ONLY = 0
    NONE = 1
    DETAILED = 2


class LayerInformationFormat(_Enum):
    ONELINE = 0
    JSON = 1


class HardwareCompatibilityLevel(_Enum):
    NONE = 0
    AMPERE_PLUS = 1
    SAME_COMPUTE_CAPABILITY = 2


class NetworkDefinitionCreationFlag(_Enum):
    # EXPLICIT_BATCH is absent: TensorRT 11 removed it (10.x ignored it).
    STRONGLY_TYPED = 1
    PREFER_JIT_PYTHON_PLUGINS = 2
    PREFER_AOT_PYTHON_PLUGINS = 3


class BuilderFlag(_Enum):
    # No precision flags (FP16, INT8, BF16, FP8, INT4, FP4) and no OBEY/PREFER_PRECISION_CONSTRAINTS or
    # DIRECT_IO: TensorRT 11 removed them; networks are strongly typed.
    DEBUG = 2
    REFIT = 4
    DISABLE_TIMING_CACHE = 5
    TF32 = 6
    SPARSE_WEIGHTS = 7
    VERSION_COMPATIBLE = 13
    EXCLUDE_LEAN_RUNTIME = 14
    ERROR_ON_TIMING_CACHE_MISS = 16
    DISABLE_COMPILATION_CACHE = 18
    STRICT_NANS = 24
    EDITABLE_TIMING_CACHE = 27


class ErrorCode(_Enum):
    SUCCESS = 0
    INTERNAL_ERROR = 1
    MEM_ALLOC_FAILED = 2
    MODEL_DESERIALIZE_FAILED = 3
    INVALID_VALUE = 4
    INVALID_GRAPH = 5
    INVALID_NODE = 6
    UNSUPPORTED_GRAPH = 7
    UNSUPPORTED_NODE = 8


_NP = {
    DataType.FLOAT: np.float32,
    DataType.HALF: np.float16,
    DataType.INT8: np.int8,
    DataType.INT32: np.int32,
    DataType.BOOL: np.bool_,
    DataType.UINT8: np.uint8,
    DataType.INT64: np.int64,
}
_ONNX_DTYPE = {
    1: DataType.FLOAT,
    10: DataType.HALF,
    3: DataType.INT8,
    6: DataType.INT32,
    7: DataType.INT64,
    9: DataType.BOOL,
    2: DataType.UINT8,
}


def nptype(trt_type: DataType) -> type:
    return _NP[trt_type]


# --- logging -------------------------------------------------------------------------------------------
class ILogger:
    class Severity(_Enum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    INTERNAL_ERROR = Severity.INTERNAL_ERROR
    ERROR = Severity.ERROR
    WARNING = Severity.WARNING
    INFO = Severity.INFO
    VERBOSE = Severity.VERBOSE

    def __init__(self) -> None:
        pass

    def log(self, severity: ILogger.Severity, msg: str) -> None:
        raise NotImplementedError("ILogger.log must be overridden by a derived class")


class Logger(ILogger):
    def __init__(self, min_severity: ILogger.Severity = ILogger.Severity.WARNING) -> None:
        super().__init__()
        self.min_severity = min_severity

    def log(self, severity: ILogger.Severity, msg: str) -> None:
        if severity.value <= self.min_severity.value:
            print(f"[TRT stand-in] [{severity.name[0]}] {msg}", file=sys.stderr)


def _error(logger: ILogger, msg: str) -> None:
    logger.log(ILogger.Severity.ERROR, msg)


# --- shapes --------------------------------------------------------------------------------------------
class Dims:
    def __init__(self, shape: list[int] | tuple[int, ...] | None = None) -> None:
        self._d = tuple(int(x) for x in (shape or ()))

    def __len__(self) -> int:
        return len(self._d)

    def __getitem__(self, arg0: Any) -> Any:
        return self._d[arg0]

    def __eq__(self, other: object) -> bool:
        return tuple(self) == tuple(other) if isinstance(other, (Dims, tuple, list)) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._d)

    def __repr__(self) -> str:
        return f"({', '.join(map(str, self._d))})"


class IHostMemory(bytes):
    """Serialized data (plans, timing caches); supports the buffer protocol like TensorRT's."""

    @property
    def nbytes(self) -> int:
        return len(self)

    @property
    def dtype(self) -> DataType:
        return DataType.UINT8


# --- network and parser --------------------------------------------------------------------------------
class ITensor:
    def __init__(self, name: str, shape: tuple[int, ...], dtype: DataType) -> None:
        self.name, self.shape, self.dtype = name, Dims(shape), dtype

    @property
    def is_network_input(self) -> bool:
        return True


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self._model: Any = None  # the parsed onnx.ModelProto
        self._inputs: list[ITensor] = []
        self._outputs: list[ITensor] = []

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    @property
    def num_layers(self) -> int:
        return len(self._model.graph.node) if self._model is not None else 0

    def get_input(self, index: int) -> ITensor:
        return self._inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]


class ParserError:
    def __init__(
        self, code: ErrorCode, desc: str, node: int = -1, node_name: str = "", node_operator: str = ""
    ) -> None:
        self._code, self._desc, self._node, self._name, self._op = code, desc, node, node_name, node_operator

    def code(self) -> ErrorCode:
        return self._code

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return self._node

    def node_name(self) -> str:
        return self._name

    def node_operator(self) -> str:
        return self._op


# Operators the stand-in imports (a subset of onnx-tensorrt's supported operators that covers CNNs like
# ResNet); anything else is refused the way the real parser refuses an operator it has no importer for.
_SUPPORTED_OPS = frozenset(
    """
Add AveragePool BatchNormalization Cast Clip Concat Constant Conv DequantizeLinear Div Flatten Gather Gemm
GlobalAveragePool GlobalMaxPool Identity MatMul MaxPool Mul QuantizeLinear ReduceMean Relu Reshape Shape
Sigmoid Slice Softmax Squeeze Sub Transpose Unsqueeze
""".split()
)


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
        self._network, self._logger = network, logger
        self._errors: list[ParserError] = []

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> ParserError:
        return self._errors[index]

    def clear_errors(self) -> None:
        self._errors.clear()

    def parse_from_file(self, model: str) -> bool:
        try:
            with open(model, "rb") as f:
                data = f.read()
        except OSError as e:
            self._errors.append(
                ParserError(ErrorCode.MODEL_DESERIALIZE_FAILED, f"Failed to open file: {model} ({e.strerror})")
            )
            return False
        return self.parse(data, path=model)

    def parse(self, model: bytes, path: str | None = None) -> bool:
        import onnx
        from google.protobuf.message import DecodeError

        try:
            proto = onnx.load_from_string(bytes(model))
        except (DecodeError, ValueError) as e:
            self._errors.append(ParserError(ErrorCode.MODEL_DESERIALIZE_FAILED, f"Failed to parse ONNX model ({e})"))
            return False
        self._errors += _check_graph(proto)
        for e in self._errors:
            _error(self._logger, f"ModelImporter: {e.node_name() or e.node()} [{e.node_operator()}]: {e.desc()}")
        if self._errors:
            return False
        initializers = {i.name for i in proto.graph.initializer}
        self._network._model = proto
        self._network._inputs = [_tensor(v) for v in proto.graph.input if v.name not in initializers]
        self._network._outputs = [_tensor(v) for v in proto.graph.output]
        return True


def _tensor(value: Any) -> ITensor:
    t = value.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
    return ITensor(value.name, shape, _ONNX_DTYPE.get(t.elem_type, DataType.FLOAT))


def _check_graph(proto: Any) -> list[ParserError]:
    """The parser's refusals rn50 must handle: unsupported operators and malformed Q/DQ."""
    from onnx import numpy_helper

    errors: list[ParserError] = []
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for index, node in enumerate(proto.graph.node):

        def refuse(code: ErrorCode, desc: str, node: Any = node, index: int = index) -> None:
            errors.append(ParserError(code, desc, index, node.name, node.op_type))

        if node.domain not in ("", "ai.onnx") or node.op_type not in _SUPPORTED_OPS:
            refuse(
                ErrorCode.UNSUPPORTED_NODE,
                f"No importer registered for op: {node.op_type}. Attempting to import as plugin.",
            )
            continue
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        scale = inits.get(node.input[1]) if len(node.input) > 1 else None
        zero = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scale is not None and not (scale > 0).all():
            refuse(ErrorCode.INVALID_NODE, "Scale coefficients must all be positive")
        if zero is not None and zero.dtype != np.int8:
            refuse(
                ErrorCode.UNSUPPORTED_NODE,
                f"Zero point of type {zero.dtype} is not supported: TensorRT quantizes to INT8 (or FP8)",
            )
        elif zero is not None and zero.any():
            refuse(
                ErrorCode.UNSUPPORTED_NODE,
                "TensorRT only supports symmetric quantization. The zero point for the "
                "QuantizeLinear/DequantizeLinear operator must be all zeros.",
            )
        if node.op_type == "QuantizeLinear":
            users = consumers.get(node.output[0], [])
            if not users or any(u.op_type != "DequantizeLinear" for u in users):
                refuse(
                    ErrorCode.INVALID_NODE,
                    "QuantizeLinear must be followed by DequantizeLinear (a Q/DQ pair); found "
                    + (", ".join(u.op_type for u in users) or "no consumer"),
                )
    return errors


# --- builder -------------------------------------------------------------------------------------------
class IOptimizationProfile:
    def __init__(self) -> None:
        self._shapes: dict[str, tuple[Dims, Dims, Dims]] = {}
        self._valid = True

    def set_shape(self, input: str, min: Dims, opt: Dims, max: Dims) -> None:  # noqa: A002 - TensorRT's names
        lo, mid, hi = (Dims(list(d)) for d in (min, opt, max))
        ok = len(lo) == len(mid) == len(hi) and all(0 <= a <= b <= c for a, b, c in zip(lo, mid, hi, strict=True))
        if not ok:
            self._valid = False  # TensorRT logs "Parameter check failed"; add_optimization_profile then refuses it
            return
        self._shapes[input] = (lo, mid, hi)

    def get_shape(self, input: str) -> list[Dims]:  # noqa: A002
        return list(self._shapes.get(input, ()))

    def __bool__(self) -> bool:
        return self._valid and bool(self._shapes)


class ITimingCache:
    def __init__(self, entries: dict[str, str] | None = None, origin: tuple[str, str] | None = None) -> None:
        self._entries = dict(entries or {})
        self._origin = origin or (__version__, __rn50_standin__.compute_capability)

    def serialize(self) -> IHostMemory:
        body = json.dumps(
            {"tensorrt": self._origin[0], "cc": self._origin[1], "entries": self._entries}, sort_keys=True
        )
        return IHostMemory(_CACHE_MAGIC + body.encode())

    def combine(self, input_cache: ITimingCache, ignore_mismatch: bool) -> bool:
        if input_cache._origin != self._origin and not ignore_mismatch:
            return False
        self._entries.update(input_cache._entries)
        return True

    def reset(self) -> bool:
        self._entries.clear()
        return True


class IProgressMonitor:
    def __init__(self) -> None:
        pass

    def phase_start(self, phase_name: str, parent_phase: str, num_steps: int) -> None:
        pass

    def step_complete(self, phase_name: str, step: int) -> bool:
        return True

    def phase_finish(self, phase_name: str) -> None:
        pass


class IBuilderConfig:
    def __init__(self, logger: ILogger) -> None:
        self._logger = logger
        self._pools = {MemoryPoolType.WORKSPACE: 1 << 40}  # TensorRT's default: the device's memory
        self._flags: set[BuilderFlag] = set()
        self._profiles: list[IOptimizationProfile] = []
        self._cache: ITimingCache | None = None
        self._level = 3
        self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY
        self.hardware_compatibility_level = HardwareCompatibilityLevel.NONE
        self.progress_monitor: IProgressMonitor | None = None

    @property
    def builder_optimization_level(self) -> int:
        return self._level

    @builder_optimization_level.setter
    def builder_optimization_level(self, value: int) -> None:
        if not 0 <= value <= 5:
            _error(
                self._logger,
                f"IBuilderConfig::setBuilderOptimizationLevel: Error Code 3: API Usage Error "
                f"(Parameter check failed, condition: level >= 0 && level <= 5. level={value})",
            )
            return
        self._level = value

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        self._pools[pool] = int(pool_size)

    def get_memory_pool_limit(self, pool: MemoryPoolType) -> int:
        return self._pools.get(pool, 0)

    def set_flag(self, flag: BuilderFlag) -> None:
        self._flags.add(flag)

    def clear_flag(self, flag: BuilderFlag) -> None:
        self._flags.discard(flag)

    def get_flag(self, flag: BuilderFlag) -> bool:
        return flag in self._flags

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
        data = bytes(serialized_timing_cache)
        if not data:
            return ITimingCache()
        if not data.startswith(_CACHE_MAGIC):
            self._logger.log(
                ILogger.Severity.WARNING, "Invalid timing cache: magic tag does not match; a new cache is used"
            )
            return ITimingCache()
        body = json.loads(data[len(_CACHE_MAGIC) :])
        return ITimingCache(body["entries"], (body["tensorrt"], body["cc"]))

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        if cache._origin != (__version__, __rn50_standin__.compute_capability) and not ignore_mismatch:
            self._logger.log(
                ILogger.Severity.WARNING, "The timing cache was created by another TensorRT version or device"
            )
            return False
        self._cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache:
        if self._cache is None:
            self._cache = ITimingCache()
        return self._cache

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        if not profile:
            _error(
                self._logger,
                "IBuilderConfig::addOptimizationProfile: Error Code 3: API Usage Error "
                "(Parameter check failed, condition: profile->isValid())",
            )
            return -1
        self._profiles.append(profile)
        return len(self._profiles) - 1

    @property
    def num_optimization_profiles(self) -> int:
        return len(self._profiles)


class Builder:
    def __init__(self, logger: ILogger) -> None:
        self._logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig(self._logger)

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> IHostMemory | None:
        from tensorrt import _build

        return _build.build(network, config, self._logger)


# --- runtime -------------------------------------------------------------------------------------------
class Runtime:
    def __init__(self, logger: ILogger) -> None:
        self._logger = logger

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
        from tensorrt import _build

        plan = _build.read_plan(bytes(serialized_engine), self._logger)
        return None if plan is None else ICudaEngine(*plan)


class ICudaEngine:
    def __init__(self, header: dict[str, Any], onnx_bytes: bytes, logger: ILogger) -> None:
        self._header, self._onnx, self._logger = header, onnx_bytes, logger
        self._io: list[dict[str, Any]] = header["io"]
        self._session: Any = None

    def _tensor(self, name: str) -> dict[str, Any]:
        return next(t for t in self._io if t["name"] == name)

    @property
    def num_io_tensors(self) -> int:
        return len(self._io)

    @property
    def num_layers(self) -> int:
        return len(self._header["layers"])

    @property
    def num_optimization_profiles(self) -> int:
        return 1

    @property
    def device_memory_size_v2(self) -> int:
        return int(self._header["workspace"])

    def get_tensor_name(self, index: int) -> str:
        return str(self._io[index]["name"])

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode[self._tensor(name)["mode"]]

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType[self._tensor(name)["dtype"]]

    def get_tensor_shape(self, name: str) -> Dims:
        return Dims(self._tensor(name)["shape"])

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
        return [Dims(s) for s in self._header["profile"][name]]

    def create_execution_context(self, strategy: Any = None) -> IExecutionContext:
        return IExecutionContext(self)

    def create_engine_inspector(self) -> EngineInspector:
        return EngineInspector(self)

    def serialize(self) -> IHostMemory:
        from tensorrt import _build

        return IHostMemory(_build.write_plan(self._header, self._onnx))


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: Any) -> bool:
        shape = tuple(int(d) for d in shape)
        lo, _opt, hi = self.engine._header["profile"].get(name, ([], [], []))
        if len(shape) != len(lo) or not all(a <= d <= b for a, d, b in zip(lo, shape, hi, strict=True)):
            return False  # TensorRT logs the profile violation and returns False
        self._shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> Dims:
        info = self.engine._tensor(name)
        if info["mode"] == "INPUT":
            return Dims(self._shapes.get(name, tuple(info["shape"])))
        batch = next(iter(self._shapes.values()), (-1,))[0]  # the one dynamic axis is the batch
        return Dims([batch if d < 0 else d for d in info["shape"]])

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if not any(t["name"] == name for t in self.engine._io):
            return False
        self._addresses[name] = int(memory)
        return True

    def get_tensor_address(self, name: str) -> int:
        return self._addresses.get(name, 0)

    def execute_async_v3(self, stream_handle: int) -> bool:
        """Runs the ONNX file the engine was built from on ONNX Runtime CPU, synchronously (there is no
        device), reading and writing the buffers at the addresses set with ``set_tensor_address``."""
        from tensorrt import _build

        return _build.execute(self, stream_handle)


class EngineInspector:
    def __init__(self, engine: ICudaEngine) -> None:
        self._engine = engine
        self.execution_context: IExecutionContext | None = None

    def get_layer_information(self, layer_index: int, format: LayerInformationFormat) -> str:  # noqa: A002
        layer = self._engine._header["layers"][layer_index]
        return json.dumps(layer) if format == LayerInformationFormat.JSON else str(layer.get("Name", layer))

    def get_engine_information(self, format: LayerInformationFormat) -> str:  # noqa: A002
        from tensorrt import _build

        return _build.engine_information(self._engine._header, format)


# --- the stand-in's self-description and its device seam ----------------------------------------------
class _HostStream:
    _next = 1

    def __init__(self) -> None:
        self.handle = _HostStream._next
        _HostStream._next += 1


class _HostMemory:
    """rn50's device-memory seam (``rn50.runtimes.device.DeviceMemory``) on host memory: buffers are numpy
    arrays whose addresses TensorRT's API receives as device pointers."""

    name = "host memory (stand-in)"

    def unavailable(self) -> str | None:
        return None

    def identity(self) -> tuple[str, str]:
        return __rn50_standin__.gpu_name, __rn50_standin__.compute_capability

    def stream(self) -> _HostStream:
        return _HostStream()

    def stream_handle(self, stream: _HostStream) -> int:
        return stream.handle

    def synchronize(self, stream: _HostStream) -> None:
        pass  # the stand-in computes synchronously

    def to_device(self, array: np.ndarray, stream: _HostStream) -> np.ndarray:
        return np.array(array, order="C", copy=True)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
        return np.empty(shape, dtype)

    def address(self, buffer: np.ndarray) -> int:
        return int(buffer.ctypes.data)

    def to_host(self, buffer: np.ndarray, stream: _HostStream) -> np.ndarray:
        return np.array(buffer, dtype=np.float32 if buffer.dtype.kind == "f" else buffer.dtype)

    def capture(self, stream: _HostStream, enqueue: Any) -> Any:
        __rn50_standin__.captures += 1  # a graph is "captured" without running, as CUDA does

        def replay() -> None:
            enqueue()

        return replay

    def timer(self, stream: _HostStream, enqueue: Any) -> Any:
        from rn50.runtimes.timing import wall_clock

        return wall_clock(enqueue)

    def copy_times(self, feed: dict[str, np.ndarray], output_bytes: int, stream: _HostStream) -> tuple[float, float]:
        from rn50.runtimes.device import median_of
        from rn50.runtimes.timing import wall_clock

        dst = {k: np.empty_like(v) for k, v in feed.items()}
        out, host = np.empty(output_bytes, np.uint8), np.empty(output_bytes, np.uint8)
        up = wall_clock(lambda: [np.copyto(dst[k], v) for k, v in feed.items()])
        return median_of(up), median_of(wall_clock(lambda: np.copyto(host, out)))


class _StandIn:
    label = "rn50 TensorRT stand-in (ONNX Runtime CPU; not TensorRT)"

    def __init__(self) -> None:
        self.gpu_name = "stand-in GPU (host memory)"
        self.compute_capability = "9.0"
        self.device = _HostMemory()
        self.captures = 0


__rn50_standin__ = _StandIn()
