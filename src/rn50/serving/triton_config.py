"""Triton model configurations (``config.pbtxt``) for rn50's artifacts.

Each configuration is built as Triton's own ``ModelConfig`` protobuf message (the one ``tritonclient``
ships), written as text, parsed back, and checked against the artifact's inputs and outputs (and, for an
engine, its optimisation profile) before anything is written. Pure functions: nothing here starts a server.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rn50.errors import EnvironmentProblem, UsageError
from rn50.words import cmd, opt

if TYPE_CHECKING:
    from pathlib import Path

    from rn50.runtimes.kinds import Device, Placement
    from rn50.runtimes.model_io import ModelIO

TRITON_EXTRA = "pip install 'rn50[triton]'"
DTYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "int8": "TYPE_INT8",
    "uint8": "TYPE_UINT8",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
}
DEFAULT_MAX_BATCH = 8
DEFAULT_QUEUE_DELAY_US = 1000
PRECISION_PARAMETER = "rn50_precision"  # how rn50's load test learns what a served model is judged as
ARTIFACT_PARAMETER = "rn50_artifact"
SHA256_PARAMETER = "rn50_sha256"  # of the file served: the load test refuses a reference from another work directory

# The index rn50 triton-repo writes into a repository (Triton reads model folders only): the models it holds, each a
# copy of a work-directory artifact with its sha256.
REPOSITORY_INDEX = "rn50-repository.json"


def repository_models(index: Path) -> list[dict[str, Any]]:
    """The models a repository index lists (each with at least its name; [] for a missing or unreadable index)."""
    import json

    try:
        data = json.loads(index.read_text())
        return [m for m in data["models"] if isinstance(m, dict) and isinstance(m.get("name"), str)]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def model_config_pb2() -> Any:
    """Triton's ModelConfig protobuf module, from tritonclient (the `triton` extra)."""
    if importlib.util.find_spec("tritonclient") is None:
        raise EnvironmentProblem(
            "tritonclient is not installed (Triton's model-config protobuf comes with it)", fix=TRITON_EXTRA
        )
    from tritonclient.grpc import model_config_pb2 as pb2

    return pb2


def model_name(artifact: str, device: Device) -> str:
    return f"{artifact}-{device}"


@dataclass(frozen=True)
class Batching:
    """How Triton batches and runs a served model (triton-repo's configs, rn50 serve's): one set of flags for both."""

    max_batch: int = DEFAULT_MAX_BATCH  # Triton's max_batch_size for ONNX and IR models (an engine's: its profile's)
    queue_delay_us: int = DEFAULT_QUEUE_DELAY_US  # dynamic batcher: how long a request may wait for others
    instances: int = 1  # Triton's instance_group count

    def check(self) -> None:
        if self.max_batch < 1:
            raise UsageError(
                f"{opt('max_batch_size')} {self.max_batch} must be >= 1", fix=f"pass e.g. {opt('max_batch_size')} 8"
            )
        if self.queue_delay_us < 0:
            raise UsageError(
                f"{opt('queue_delay_us')} {self.queue_delay_us} is negative", fix="pass 0 or more microseconds"
            )
        if self.instances < 1:
            raise UsageError(f"{opt('instances')} {self.instances} must be >= 1", fix=f"pass e.g. {opt('instances')} 1")


def batch_limits(io: ModelIO, batching: Batching, label: str) -> tuple[int, list[int]]:
    """max_batch_size and the preferred batch sizes: an engine's come from its profile, which must start at
    batch 1 (Triton's batcher sends any size up to the maximum)."""
    if io.batch_range is None:
        return batching.max_batch, [batching.max_batch]
    lo, hi = io.batch_range
    if lo != 1:
        raise UsageError(
            f"{label}: the engine's profile starts at batch {lo}; Triton's dynamic batcher sends batches from 1",
            fix=f"rebuild it with {cmd('build-trt', min_batch=1)}",
        )
    return hi, sorted({io.batch_opt or hi, hi})


def build(
    name: str,
    placement: Placement,
    io: ModelIO,
    batching: Batching,
    *,
    precision: str,
    artifact: str,
    sha256: str,
    threads: int | None = None,
    parameters: dict[str, str] | None = None,
) -> Any:
    """The ModelConfig message for one artifact on one device."""
    pb2 = model_config_pb2()
    max_batch, preferred = batch_limits(io, batching, name)
    cfg = pb2.ModelConfig(name=name, max_batch_size=max_batch)
    if placement.backend == "tensorrt":
        cfg.platform = "tensorrt_plan"
    else:
        cfg.backend = placement.backend
    cfg.default_model_filename = placement.filename
    for t in io.inputs:
        cfg.input.add(name=t.name, data_type=pb2.DataType.Value(DTYPES[t.dtype]), dims=list(t.dims))
    for t in io.outputs:
        cfg.output.add(name=t.name, data_type=pb2.DataType.Value(DTYPES[t.dtype]), dims=list(t.dims))
    kind = pb2.ModelInstanceGroup.KIND_GPU if placement.device == "gpu" else pb2.ModelInstanceGroup.KIND_CPU
    cfg.instance_group.add(kind=kind, count=batching.instances)
    cfg.dynamic_batching.preferred_batch_size.extend(preferred)
    cfg.dynamic_batching.max_queue_delay_microseconds = batching.queue_delay_us
    if placement.accelerator:
        acc = cfg.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        acc.parameters["precision_mode"] = placement.accelerator
    params = dict(parameters or {})
    if placement.backend == "openvino":  # latency first: one stream, rn50's thread count
        params |= {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"} | (
            {"INFERENCE_NUM_THREADS": str(threads)} if threads else {}
        )
    if placement.backend == "onnxruntime" and threads and placement.device == "cpu":
        params |= {"intra_op_thread_count": str(threads)}
    params |= {PRECISION_PARAMETER: precision, ARTIFACT_PARAMETER: artifact, SHA256_PARAMETER: sha256}
    for key, value in params.items():
        cfg.parameters[key].string_value = value
    for batch in sorted({1, max_batch}):  # the first requests do not pay for the backend's first run
        warm = cfg.model_warmup.add(name=f"zero_batch_{batch}", batch_size=batch)
        for t in io.inputs:
            warm.inputs[t.name].data_type = pb2.DataType.Value(DTYPES[t.dtype])
            warm.inputs[t.name].dims.extend([d if d > 0 else 1 for d in t.dims])
            warm.inputs[t.name].zero_data = True  # Triton's random_data is random bytes: NaN and Inf among them
    return cfg


def to_text(cfg: Any, header: list[str]) -> str:
    from google.protobuf import text_format

    return "".join(f"# {line}\n" for line in header) + text_format.MessageToString(cfg)


def parse(text: str) -> Any:
    """A config.pbtxt parsed with Triton's ModelConfig protobuf; a text Triton would refuse is refused here."""
    from google.protobuf import text_format

    pb2 = model_config_pb2()
    try:
        return text_format.Parse(text, pb2.ModelConfig())
    except text_format.ParseError as e:
        raise UsageError(
            f"not a Triton model configuration: {e}", fix=f"regenerate it with {cmd('triton-repo')}"
        ) from e


def check(cfg: Any, io: ModelIO, *, where: str) -> None:
    """The parsed configuration against the artifact: names, dtypes and dims of every input and output, the
    batch size against an engine's profile, the preferred sizes against the maximum."""
    pb2 = model_config_pb2()
    problems = []
    for kind, declared, actual in (("input", cfg.input, io.inputs), ("output", cfg.output, io.outputs)):
        have = {t.name: t for t in declared}
        for t in actual:
            c = have.pop(t.name, None)
            if c is None:
                problems.append(f"{kind} {t.name!r} is missing")
                continue
            if pb2.DataType.Name(c.data_type) != DTYPES.get(t.dtype):
                problems.append(f"{kind} {t.name!r} is {pb2.DataType.Name(c.data_type)}, the artifact's is {t.dtype}")
            if tuple(c.dims) != t.dims:
                problems.append(f"{kind} {t.name!r} dims {list(c.dims)}, the artifact's are {list(t.dims)}")
        problems += [f"{kind} {n!r} is not in the artifact" for n in have]
    if cfg.max_batch_size < 1:
        problems.append(f"max_batch_size {cfg.max_batch_size}: rn50's models have a batch axis")
    if io.batch_range and not io.batch_range[0] <= cfg.max_batch_size <= io.batch_range[1]:
        problems.append(
            f"max_batch_size {cfg.max_batch_size} is outside the engine's profile "
            f"{io.batch_range[0]}..{io.batch_range[1]}"
        )
    bad = [b for b in cfg.dynamic_batching.preferred_batch_size if not 1 <= b <= cfg.max_batch_size]
    if bad:
        problems.append(f"preferred batch size(s) {bad} above max_batch_size {cfg.max_batch_size}")
    if problems:
        raise UsageError(f"{where}: " + "; ".join(problems), fix=f"regenerate it with {cmd('triton-repo')}")
