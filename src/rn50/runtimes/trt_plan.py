"""TensorRT decisions as pure functions, tested without TensorRT or a GPU: options, profile shapes,
which ONNX to build, engine cache keys, sidecar metadata and its check, and reading the engine
inspector's layer report."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from rn50.errors import UsageError
from rn50.words import cmd, opt

if TYPE_CHECKING:
    from pathlib import Path

PRECISIONS = ("fp32", "fp16", "int8")
ONNX_FOR_PRECISION = {"fp32": "onnx-fp32", "fp16": "onnx-fp16", "int8": "onnx-int8-tensorrt"}
HARDWARE_COMPAT = ("none", "ampere-plus", "same-compute-capability")
MAX_OPT_LEVEL = 5
SIDECAR_SCHEMA = "rn50.engine/1"

# APIs TensorRT 10/11 removed (or that have no place in a strongly typed build); a test scans the TensorRT
# modules for them.
REMOVED_APIS = (
    "FP16",
    "INT8",
    "BF16",
    "FP8",
    "INT4",
    "FP4",  # BuilderFlag precision flags: precision lives in the ONNX
    "int8_calibrator",
    "IInt8Calibrator",
    "IInt8EntropyCalibrator2",
    "IInt8MinMaxCalibrator",
    "IInt8LegacyCalibrator",
    "set_calibration_profile",
    "get_calibration_profile",
    "platform_has_fast_fp16",
    "platform_has_fast_int8",
    "platform_has_tf32",
    "device_memory_size",  # use device_memory_size_v2
    "max_workspace_size",
    "build_engine",
    "build_cuda_engine",
    "execute_async_v2",
    "execute_v2",
    "num_bindings",
    "get_binding_shape",
    "get_binding_index",
    "set_binding_shape",
    "binding_is_input",
    "EXPLICIT_BATCH",
    "OBEY_PRECISION_CONSTRAINTS",
    "PREFER_PRECISION_CONSTRAINTS",
)


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "fp32"  # fp32, fp16 (the FP16 ONNX) or int8 (the TensorRT Q/DQ ONNX)
    min_batch: int = 1  # optimisation profile: smallest batch
    opt_batch: int = 8  # the batch TensorRT tunes for
    max_batch: int = 32  # largest batch
    image_size: int = 224
    workspace_mib: int = 4096
    opt_level: int = 3  # builder optimisation level, 0-MAX_OPT_LEVEL
    hardware_compat: str = "none"  # HARDWARE_COMPAT
    version_compat: bool = False  # an engine later TensorRT versions can load

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise UsageError(
                f"unknown precision {self.precision!r}", fix=f"pass {opt('fp16')}, {opt('int8')}, or neither for FP32"
            )
        if self.min_batch < 1:
            raise UsageError(f"{opt('min_batch')} {self.min_batch} must be >= 1", fix="pass 1 or more")
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise UsageError(
                f"batch range min {self.min_batch} / opt {self.opt_batch} / max {self.max_batch} is not ordered",
                fix=f"pass {opt('min_batch')} <= {opt('opt_batch')} <= {opt('max_batch')}",
            )
        if self.workspace_mib < 1:
            raise UsageError(
                f"{opt('workspace')} {self.workspace_mib} MiB must be >= 1", fix="pass a positive size in MiB"
            )
        if not 0 <= self.opt_level <= MAX_OPT_LEVEL:
            raise UsageError(
                f"{opt('opt_level')} {self.opt_level} is out of range", fix=f"pass 0 to {MAX_OPT_LEVEL} (default 3)"
            )
        if self.hardware_compat not in HARDWARE_COMPAT:
            raise UsageError(
                f"{opt('hardware_compat')} {self.hardware_compat!r}", fix=f"use one of {', '.join(HARDWARE_COMPAT)}"
            )


def profile_shapes(opts: BuildOptions) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    s = (3, opts.image_size, opts.image_size)
    return (opts.min_batch, *s), (opts.opt_batch, *s), (opts.max_batch, *s)


def engine_key(onnx_sha256: str, trt_version: str, compute_capability: str, opts: BuildOptions) -> str:
    text = json.dumps([onnx_sha256, trt_version, compute_capability, asdict(opts)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def engine_filename(stem: str, opts: BuildOptions, key: str) -> str:
    return f"{stem}.{opts.precision}.{key[:12]}.engine"


def sidecar_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


@dataclass(frozen=True)
class Sidecar:
    tensorrt: str
    gpu: str
    compute_capability: str  # "9.0"
    onnx_sha256: str
    engine_sha256: str
    key: str
    options: dict[str, Any]
    profiles: list[dict[str, list[int]]]
    io: list[dict[str, Any]]
    layers: dict[str, Any] = field(default_factory=dict)  # summary of the inspector report
    schema: str = SIDECAR_SCHEMA
    runtime: str = "tensorrt"  # the label of what built it: a test double's (trt_env.TEST_DOUBLES) for one of its

    def save(self, path: Path) -> None:
        from rn50.artifacts import atomic_write_text

        atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Sidecar:
        if not path.is_file():
            raise UsageError(
                f"{path} is missing: the engine's metadata is unknown",
                fix=f"rebuild with `{cmd('build-trt')}` (engines need their .engine.json sidecar)",
            )
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or data.get("schema") != SIDECAR_SCHEMA:
                raise ValueError(f"schema {data.get('schema') if isinstance(data, dict) else None!r}")
            sidecar = cls(**data)
            bad = [
                f
                for f in ("tensorrt", "gpu", "compute_capability", "onnx_sha256", "engine_sha256", "key", "runtime")
                if not isinstance(getattr(sidecar, f), str)
            ]
            if bad or not isinstance(sidecar.options, dict) or not isinstance(sidecar.profiles, list):
                raise ValueError(f"wrong types in {', '.join(bad) or 'options/profiles'}")
            _cc(sidecar.compute_capability)
            return sidecar
        except (OSError, ValueError, TypeError) as e:
            raise UsageError(
                f"{path} is not an rn50 engine sidecar ({e})", fix=f"rebuild with `{cmd('build-trt')}`"
            ) from e


def _major(version: str) -> str:
    return version.split(".")[0]


def _cc(value: str) -> tuple[int, int]:
    major, minor = value.split(".")
    return int(major), int(minor)


def check_engine_file(sidecar: Sidecar, engine: Path, engine_sha256: str) -> None:
    """Refuse an engine file that is not the one its sidecar describes (truncated, replaced) and a sidecar
    whose recorded build (TensorRT, GPU, ONNX, options) no longer gives its key (edited by hand)."""
    fix = rebuild_fix(str(sidecar.options.get("precision", "fp32")))
    if engine_sha256 != sidecar.engine_sha256:
        raise UsageError(
            f"{engine.name} does not match its sidecar (sha256 {engine_sha256[:12]}, recorded "
            f"{sidecar.engine_sha256[:12]}): the file was truncated or replaced",
            fix=fix,
        )
    try:
        key = engine_key(
            sidecar.onnx_sha256, sidecar.tensorrt, sidecar.compute_capability, BuildOptions(**sidecar.options)
        )
    except TypeError:
        key = ""
    if key != sidecar.key:
        raise UsageError(f"{sidecar_path(engine).name} was edited: its fields no longer give the engine's key", fix=fix)


def rebuild_fix(precision: str) -> str:
    return f"rebuild with `{cmd('build-trt')}{'' if precision == 'fp32' else ' --' + precision}` on this machine"


def check_sidecar(
    sidecar: Sidecar, *, tensorrt_version: str, compute_capability: str, precision: str, runtime: str = "tensorrt"
) -> None:
    """Refuse an engine built by another TensorRT or for another GPU, before deserialising it."""
    fix = rebuild_fix(precision)
    if sidecar.runtime != runtime:
        raise UsageError(f"the engine was built by {sidecar.runtime}; this machine runs {runtime}", fix=fix)
    same_version = sidecar.tensorrt == tensorrt_version
    version_ok = same_version or (
        sidecar.options.get("version_compat", False)
        and _major(sidecar.tensorrt) == _major(tensorrt_version)
        and tuple(map(int, tensorrt_version.split(".")[:3])) >= tuple(map(int, sidecar.tensorrt.split(".")[:3]))
    )
    if not version_ok:
        raise UsageError(
            f"the engine was built with TensorRT {sidecar.tensorrt}; this machine has {tensorrt_version}", fix=fix
        )
    compat = sidecar.options.get("hardware_compat", "none")
    built, here = _cc(sidecar.compute_capability), _cc(compute_capability)
    if compat == "ampere-plus":
        ok = here >= (8, 0)
    elif compat == "same-compute-capability":
        ok = here == built
    else:
        ok = here == built  # a plain engine is tied to its GPU model; same CC is the closest check we can make
    if not ok:
        raise UsageError(
            f"the engine was built for compute capability {sidecar.compute_capability} ({sidecar.gpu}); this GPU is "
            f"{compute_capability}",
            fix=fix + (f" or build with {opt('hardware_compat')} ampere-plus" if compat == "none" else ""),
        )


@dataclass(frozen=True)
class LayerReport:
    layers: int
    int8_convolutions: int
    non_int8_convolutions: list[str]
    reformats: list[str]
    precisions: dict[str, int]  # first input data type -> layer count
    convolution_nodes: dict[str, str] = field(default_factory=dict)  # ONNX node of each convolution layer -> data type


# Words TensorRT uses for a data type in the inspector's format strings ("Thirty-two wide channel vectorized
# row major Int8 format", "Row major linear FP32", "Channel major FP16 format where channel % 8 == 0") and
# in TensorRT 11's separate "DataType" field ("Float", "Half", "Int8"), in the order they are tried.
DATATYPE_WORDS = (
    ("Int8", ("int8",)),
    ("FP8", ("fp8",)),
    ("BFloat16", ("bf16", "bfloat16")),
    ("Half", ("fp16", "half")),
    ("Float", ("fp32", "float")),
    ("Int32", ("int32",)),
    ("Int64", ("int64",)),
    ("Bool", ("bool",)),
)


def _datatype(io: Any) -> str:
    if isinstance(io, dict):
        text = str(io.get("DataType") or io.get("Format/Datatype") or "").lower()
        for name, words in DATATYPE_WORDS:
            if any(w in text for w in words):
                return name
    return "?"


def read_layer_report(inspector_json: str) -> LayerReport:
    """Per-layer precision and fusions from the engine inspector (ProfilingVerbosity.DETAILED)."""
    data = json.loads(inspector_json)
    layers = data.get("Layers", []) if isinstance(data, dict) else []
    convs_bad, convs_int8, reformats = [], 0, []
    precisions: dict[str, int] = {}
    conv_nodes: dict[str, str] = {}
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        name, kind = str(layer.get("Name", "?")), str(layer.get("LayerType", ""))
        inputs = layer.get("Inputs") or []
        dtype = _datatype(inputs[0]) if inputs else "?"
        precisions[dtype] = precisions.get(dtype, 0) + 1
        if "Reformat" in kind or "reformat" in name.lower():
            reformats.append(name)
        if "Convolution" in kind or kind in ("CaskConvolution", "CaskGemmConvolution"):
            nodes = onnx_nodes(layer)
            if nodes:  # the convolution heads its fused layer (Conv + Add + ReLU)
                conv_nodes[nodes[0]] = dtype
            if dtype == "Int8":
                convs_int8 += 1
            else:
                convs_bad.append(f"{name} ({dtype})")
    return LayerReport(len(layers), convs_int8, convs_bad, reformats, precisions, conv_nodes)


def onnx_nodes(layer: dict[str, Any]) -> list[str]:
    """The ONNX nodes a fused layer came from: its "[ONNX Layer: …]" metadata entries, else its " + "-joined name."""
    meta = str(layer.get("Metadata") or "")
    found = [part.split("[ONNX Layer: ", 1)[1].rstrip("]") for part in meta.split("\x1f") if "[ONNX Layer: " in part]
    return found or [n.strip() for n in str(layer.get("Name", "")).split(" + ") if n.strip()]


def check_int8_engine(report: LayerReport, excluded: frozenset[str] = frozenset()) -> None:
    """Every convolution INT8, except those the Q/DQ file records as left out of INT8, which must not be."""
    from rn50.errors import CheckFailed

    nodes = report.convolution_nodes
    if nodes:
        missing = [f"{n} ({d})" for n, d in nodes.items() if n not in excluded and d != "Int8"]
        wrong = sorted(n for n, d in nodes.items() if n in excluded and d == "Int8")
    else:  # a report without ONNX node names: judged on its layers alone
        missing, wrong = report.non_int8_convolutions, []
    if report.int8_convolutions == 0 or missing:
        raise CheckFailed(
            f"INT8 engine has {len(missing)} convolutions not running in INT8 "
            f"({', '.join(missing[:3]) or 'none found in INT8'})",
            fix=f"check the Q/DQ placement ({cmd('quantize', int8=True, target='tensorrt')} lints it) and the layer "
            "report",
        )
    if wrong:
        raise CheckFailed(
            f"INT8 engine runs {len(wrong)} convolution(s) in INT8 that the Q/DQ file left out of INT8 "
            f"({', '.join(wrong[:3])})",
            fix="check the Q/DQ file's rn50.int8_excluded record against its Q/DQ nodes, and the layer report",
        )


def sidecar_problem(engine: Path, digest: str) -> str | None:
    """The engine's sidecar: readable, and describing this engine (``rn50 verify``)."""
    try:
        sidecar = Sidecar.load(sidecar_path(engine))
        check_engine_file(sidecar, engine, digest)
    except UsageError as e:
        return e.problem
    return None
