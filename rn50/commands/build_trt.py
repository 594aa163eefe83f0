"""``rn50 build-trt``: a strongly typed TensorRT engine from the ONNX file of its precision (the work itself
is in ``rn50.runtimes.trt_build``). A missing FP16 or INT8 source file is made first by the quantize
command, with the same calibration options; a changed one is refused, never silently remade."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rn50.commands.quantize import CalibrateOptions, QuantizeOptions, QuantizeOutcome, quantize
from rn50.errors import UsageError
from rn50.runtimes.trt_build import BuildResult, EngineSource, build_engine
from rn50.runtimes.trt_env import require_tensorrt
from rn50.runtimes.trt_plan import ONNX_FOR_PRECISION, BuildOptions

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from rn50.artifacts import WorkDir
    from rn50.calibration.table import CalibrationTable

ENGINE_PRECISIONS = ("fp32", "fp16", "int8")


def precision_of(*, fp16: bool, int8: bool) -> str:
    if fp16 and int8:
        raise UsageError("--fp16 and --int8 together", fix="build one precision per call")
    return "int8" if int8 else "fp16" if fp16 else "fp32"


@dataclass(frozen=True)
class BuildTrtOptions:
    build: BuildOptions = field(default_factory=BuildOptions)
    calibrate: CalibrateOptions = field(default_factory=CalibrateOptions)  # when the INT8 file must be made first
    onnx: Path | None = None  # --onnx: build from this file (another tool's) instead of the work directory's

    def check(self) -> None:
        self.build.validate()
        self.calibrate.check()
        if self.onnx is not None:
            check_source_file(self.onnx, self.build.precision)
        require_tensorrt()  # fail fast: on a machine without TensorRT or a GPU the first message says so


FLAGS = {"fp32": "neither --fp16 nor --int8", "fp16": "--fp16", "int8": "--int8"}


def check_source_file(path: Path, precision: str) -> None:
    """--onnx: an existing ONNX file whose own precision is the one asked for (never silently another)."""
    from rn50.evaluation.targets import onnx_precision

    if not path.is_file():
        raise UsageError(f"ONNX file not found: {path}", fix="pass an existing file to --onnx")
    try:
        found = onnx_precision(path)
    except Exception as e:  # noqa: BLE001 - onnx raises several kinds for a file that is not a model
        raise UsageError(f"{path} is not a readable ONNX model ({type(e).__name__})", fix="pass an ONNX file to --onnx") from None
    if found != precision:
        raise UsageError(f"{path} is an {found} model, but this build asks for {precision}", fix=f"pass {FLAGS[found]} with this file")


def missing_source(options: BuildTrtOptions, workdir: WorkDir) -> str | None:
    """The precision whose ONNX file must be made before the build (made when absent, never when changed)."""
    precision = options.build.precision
    if options.onnx is not None or precision == "fp32" or workdir.artifact(ONNX_FOR_PRECISION[precision]) is not None:
        return None
    return precision


def make_source(options: BuildTrtOptions, workdir: WorkDir, *, table: CalibrationTable | None) -> QuantizeOutcome:
    precision = options.build.precision
    made = QuantizeOptions(int8=precision == "int8", fp16=precision == "fp16", target="tensorrt", calibrate=options.calibrate)
    return quantize(made, workdir, table=table)


def engine_source(workdir: WorkDir, precision: str, onnx: Path | None = None) -> EngineSource:
    """The ONNX file of ``precision`` (``onnx``: another tool's file, by its own name): an INT8 one linted for
    TensorRT before the parser sees it, with the layers it records as left out of INT8."""
    import logging

    import onnx as onnx_lib

    from rn50.artifacts import sha256_file
    from rn50.calibration import lint

    if onnx is not None:
        source = EngineSource(f"onnx file {onnx.name}", onnx, sha256_file(onnx))
    else:
        art, path = workdir.require(ONNX_FOR_PRECISION[precision])  # missing or changed: refused with the fix
        source = EngineSource(art.name, path, art.sha256)
    if precision != "int8":
        return source
    model = onnx_lib.load(str(source.path), load_external_data=False)
    for warning in lint.check(model, "tensorrt"):
        logging.getLogger(__name__).warning("%s", warning)
    return EngineSource(source.name, source.path, source.sha256, lint.excluded_of(model))


def build_trt(options: BuildTrtOptions, workdir: WorkDir, *, progress: Callable[[str], None] | None = None) -> BuildResult:
    options.build.validate()
    require_tensorrt()  # before anything is read or written: the first message is about TensorRT
    return build_engine(workdir, options.build, engine_source(workdir, options.build.precision, options.onnx), progress=progress)
