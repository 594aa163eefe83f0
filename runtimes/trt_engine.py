"""The thin TensorRT layer: parse, build a strongly typed engine, inspect it. One path for TensorRT
10.12+ and 11.x: no precision flags, no calibrator (precision comes from the ONNX file), ``_v2`` APIs.
Checked with mypy against tensorrt-stubs; run only where TensorRT and a GPU exist."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rn50.errors import CheckFailed, EnvironmentProblem, UsageError
from rn50.runtimes.trt_env import import_tensorrt
from rn50.runtimes.trt_plan import BuildOptions, profile_shapes

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import tensorrt as trt
INPUT = "input"


@dataclass(frozen=True)
class BuiltEngine:
    plan: bytes
    timing_cache: bytes
    inspector_json: str
    io: list[dict[str, Any]]


def _progress_monitor(say: Callable[[str], None]) -> trt.IProgressMonitor:
    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            say(f"{phase_name} (0/{num_steps})")

        def step_complete(self, phase_name: str, step: int) -> bool:
            say(f"{phase_name} ({step + 1})")
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            say(f"{phase_name} done")

    return Monitor()


def parse_onnx(builder: trt.Builder, onnx_path: Path, logger: trt.ILogger) -> tuple[trt.INetworkDefinition, trt.OnnxParser]:
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = []
        for i in range(parser.num_errors):
            e = parser.get_error(i)
            errors.append(f"node {e.node_name() or e.node()} ({e.node_operator() or '?'}): {e.desc()}")
        raise UsageError(f"TensorRT's ONNX parser rejected {onnx_path.name}: " + "; ".join(errors[:3])
                         + (f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""),
                         fix="run rn50 export again; report the node if it persists")  # fmt: skip
    return network, parser


def build(onnx_path: Path, opts: BuildOptions, *, timing_cache: bytes = b"",
          progress: Callable[[str], None] | None = None) -> BuiltEngine:  # fmt: skip
    import_tensorrt()  # a clear error where TensorRT is missing
    import tensorrt as trt
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = parse_onnx(builder, onnx_path, logger)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_mib << 20)
    config.builder_optimization_level = opts.opt_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if opts.hardware_compat == "ampere-plus":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    elif opts.hardware_compat == "same-compute-capability":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY
    if opts.version_compat:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    cache = config.create_timing_cache(timing_cache)
    config.set_timing_cache(cache, False)
    if progress is not None:
        config.progress_monitor = _progress_monitor(progress)
    profile = builder.create_optimization_profile()
    lo, opt, hi = profile_shapes(opts)
    profile.set_shape(INPUT, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise CheckFailed("TensorRT could not build the engine", fix="run with --verbose for TensorRT's log; try a larger --workspace")
    plan = bytes(serialized)
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    if engine is None:
        raise CheckFailed("TensorRT built an engine it cannot load", fix="report this with --verbose output")
    inspector = engine.create_engine_inspector()
    info = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    io = [
        {"name": engine.get_tensor_name(i), "mode": str(engine.get_tensor_mode(engine.get_tensor_name(i))),
         "dtype": str(engine.get_tensor_dtype(engine.get_tensor_name(i))),
         "shape": dims(engine.get_tensor_shape(engine.get_tensor_name(i)))}
        for i in range(engine.num_io_tensors)
    ]  # fmt: skip
    return BuiltEngine(plan, bytes(config.get_timing_cache().serialize()), info, io)


def dims(d: trt.Dims) -> list[int]:
    return [int(d[j]) for j in range(len(d))]


def gpu_identity() -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of the current CUDA device."""
    import torch

    if not torch.cuda.is_available():
        raise EnvironmentProblem("no CUDA GPU is visible", fix="run build-trt and TensorRT parity on a machine with an NVIDIA GPU")
    major, minor = torch.cuda.get_device_capability()
    return torch.cuda.get_device_name(), f"{major}.{minor}"
