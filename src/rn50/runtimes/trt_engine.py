"""The thin TensorRT layer: parse, build a strongly typed engine, inspect it. One path for TensorRT
10.12+ and 11.x: no precision flags, no calibrator (precision comes from the ONNX file), ``_v2`` APIs.
Checked with mypy against tensorrt-stubs; executed in tests against rn50's TensorRT stand-in."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rn50.errors import CheckFailed, UsageError
from rn50.runtimes.trt_env import trt
from rn50.runtimes.trt_plan import BuildOptions, profile_shapes
from rn50.words import cmd, opt

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

log = logging.getLogger(__name__)

INPUT = "input"
MAX_PARSER_ERRORS = 3


@dataclass(frozen=True)
class BuiltEngine:
    plan: bytes
    timing_cache: bytes
    inspector_json: str
    io: list[dict[str, Any]]


def recording_logger() -> Any:
    """A TensorRT logger that forwards to Python logging and keeps the errors, so a failed call can say
    what TensorRT said instead of "returned None"."""

    class Recorder(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
                log.error("TensorRT: %s", msg)
            elif severity == trt.ILogger.Severity.WARNING:
                log.warning("TensorRT: %s", msg)
            else:
                log.debug("TensorRT: %s", msg)

        def last_error(self) -> str:
            return self.errors[-1] if self.errors else "no error logged"

    return Recorder()


def progress_monitor(say: Callable[[str], None]) -> trt.IProgressMonitor:
    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str, num_steps: int) -> None:
            say(f"{phase_name} (0/{num_steps})")

        def step_complete(self, phase_name: str, step: int) -> bool:
            say(f"{phase_name} ({step + 1})")
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            say(f"{phase_name} done")

    return Monitor()


def parse_onnx(
    builder: trt.Builder, onnx_path: Path, logger: trt.ILogger
) -> tuple[trt.INetworkDefinition, trt.OnnxParser]:
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = []
        for i in range(parser.num_errors):
            e = parser.get_error(i)
            errors.append(f"node {e.node_name() or e.node()} ({e.node_operator() or '?'}): {e.desc()}")
        more = f" (+{len(errors) - MAX_PARSER_ERRORS} more)" if len(errors) > MAX_PARSER_ERRORS else ""
        raise UsageError(
            f"TensorRT's ONNX parser rejected {onnx_path.name}: " + "; ".join(errors[:MAX_PARSER_ERRORS]) + more,
            fix=f"rebuild the file with {cmd('export')} / {cmd('quantize')}, then {cmd('build-trt')}; report the "
            "node if it "
            "persists",
        )
    return network, parser


def configure(
    builder: trt.Builder, opts: BuildOptions, timing_cache: bytes, progress: Callable[[str], None] | None
) -> trt.IBuilderConfig:
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
    if not config.set_timing_cache(cache, False):
        log.warning("the saved timing cache does not match this TensorRT or GPU; starting a new one")
        config.set_timing_cache(config.create_timing_cache(b""), False)
    if progress is not None:
        config.progress_monitor = progress_monitor(progress)
    profile = builder.create_optimization_profile()
    lo, mid, hi = profile_shapes(opts)
    profile.set_shape(INPUT, trt.Dims(list(lo)), trt.Dims(list(mid)), trt.Dims(list(hi)))
    if config.add_optimization_profile(profile) < 0:
        raise UsageError(
            f"TensorRT refused the optimisation profile {lo} / {mid} / {hi}",
            fix=f"pass {opt('min_batch')} <= {opt('opt_batch')} <= {opt('max_batch')}",
        )
    return config


def build(
    onnx_path: Path, opts: BuildOptions, *, timing_cache: bytes = b"", progress: Callable[[str], None] | None = None
) -> BuiltEngine:
    logger = recording_logger()
    builder = trt.Builder(logger)
    network, _parser = parse_onnx(builder, onnx_path, logger)
    config = configure(builder, opts, timing_cache, progress)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise CheckFailed(
            f"TensorRT could not build the engine: {logger.last_error()}",
            fix=f"rerun with {opt('verbose')} for TensorRT's log; for a workspace error pass a larger "
            f"{opt('workspace')}",
        )
    plan = bytes(serialized)
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    if engine is None:
        raise CheckFailed(
            f"TensorRT built an engine it cannot load: {logger.last_error()}",
            fix=f"report this with {opt('verbose')} output",
        )
    info = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    io = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        io.append(
            {
                "name": name,
                "mode": str(engine.get_tensor_mode(name)),
                "dtype": str(engine.get_tensor_dtype(name)),
                "shape": dims(engine.get_tensor_shape(name)),
            }
        )
    return BuiltEngine(plan, bytes(config.get_timing_cache().serialize()), info, io)


def dims(d: trt.Dims) -> list[int]:
    return [int(d[j]) for j in range(len(d))]
