"""``rn50 build-trt``: a strongly typed TensorRT engine from the ONNX file of its precision (the work itself is in
``rn50.runtimes.trt_build``). A missing FP16 or INT8 source file is made first by the quantize command, with the
same calibration options; a changed one is refused, never silently remade. An INT8 file is linted before TensorRT's
parser sees it."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from rn50.commands.calibrate import CalibrateOptions
from rn50.commands.flags import flag
from rn50.commands.outcome import QUIET, Ui
from rn50.commands.quantize import QuantizeOptions, quantize
from rn50.errors import UsageError
from rn50.reports.render import Section
from rn50.runtimes.qdq_form import QDQ_TENSORRT
from rn50.runtimes.registry import from_test_double
from rn50.runtimes.trt_build import BuildResult, EngineSource, build_engine
from rn50.runtimes.trt_env import require_tensorrt
from rn50.runtimes.trt_plan import ONNX_FOR_PRECISION, BuildOptions

if TYPE_CHECKING:
    from pathlib import Path

    from rn50.artifacts import WorkDir
    from rn50.errors import Rn50Error

log = logging.getLogger(__name__)
ENGINE_PRECISIONS = ("fp32", "fp16", "int8")
FLAGS = {"fp32": "neither --fp16 nor --int8", "fp16": "--fp16", "int8": "--int8"}


@dataclass(frozen=True)
class BuildTrtOptions:
    build: BuildOptions = field(default_factory=BuildOptions)
    calibrate: CalibrateOptions = field(default_factory=CalibrateOptions)  # when the INT8 file must be made first
    onnx: Path | None = flag(
        "--onnx",
        default=None,
        help="Build from this ONNX file (e.g. a Q/DQ model another tool wrote) instead of "
        "the work directory's; its precision must match --fp16/--int8.",
    )

    def check(self) -> None:
        self.build.validate()
        self.calibrate.check()
        if self.onnx is not None:
            check_source_file(self.onnx, self.build.precision)
        require_tensorrt()  # fail fast: on a machine without TensorRT or a GPU the first message says so


def check_source_file(path: Path, precision: str) -> None:
    """--onnx: an existing ONNX file whose own precision is the one asked for (never silently another)."""
    from rn50.evaluation.pairs import onnx_precision

    if not path.is_file():
        raise UsageError(f"ONNX file not found: {path}", fix="pass an existing file to --onnx")
    found = onnx_precision(path)  # a file that is not ONNX: one line, naming it
    if found != precision:
        raise UsageError(
            f"{path} is an {found} model, but this build asks for {precision}",
            fix=f"pass {FLAGS[found]} with this file",
        )


def missing_source(options: BuildTrtOptions, workdir: WorkDir) -> str | None:
    """The precision whose ONNX file must be made before the build (made when absent, never when changed)."""
    precision = options.build.precision
    if options.onnx is not None or precision == "fp32" or workdir.artifact(ONNX_FOR_PRECISION[precision]) is not None:
        return None
    return precision


def engine_source(workdir: WorkDir, precision: str, onnx: Path | None = None) -> EngineSource:
    """The ONNX file of ``precision`` (``onnx``: another tool's file, by its own name): an INT8 one linted for
    TensorRT before the parser sees it, with the layers it records as left out of INT8."""
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
    for warning in lint.check(model, QDQ_TENSORRT):
        log.warning("%s", warning)
    return EngineSource(source.name, source.path, source.sha256, lint.excluded_of(model))


@dataclass(frozen=True)
class BuildTrtOutcome:
    result: BuildResult
    error: Rn50Error | None = None

    def sections(self) -> list[Section]:
        r = self.result
        lines = [f"{'reused' if r.reused else 'wrote'} {r.engine} (+ {r.sidecar.name})"]
        notes = [f"note: built by {r.runtime}, a test double, not TensorRT"] if from_test_double(r.runtime) else []
        if r.layers:
            lines.append(
                f"layers: {r.layers.layers}; by input precision {r.layers.precisions}; INT8 convolutions "
                f"{r.layers.int8_convolutions}; "
                f"reformats {len(r.layers.reformats)}"
            )
        return [Section("", paragraphs=lines, notes=notes)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self.result)


def build_trt(options: BuildTrtOptions, workdir: WorkDir, ui: Ui = QUIET) -> BuildTrtOutcome:
    """Build a strongly typed TensorRT engine (FP32, FP16 or INT8 from the ONNX file's own precision)."""
    made = missing_source(options, workdir)
    if made is not None:
        ui.status(f"making the {made} ONNX file first…")
        quantize(
            QuantizeOptions(int8=made == "int8", fp16=made == "fp16", target=QDQ_TENSORRT, calibrate=options.calibrate),
            workdir,
            ui,
        )
    ui.status("building the TensorRT engine…")
    source = engine_source(workdir, options.build.precision, options.onnx)
    return BuildTrtOutcome(
        build_engine(workdir, options.build, source, progress=lambda m: ui.status(f"build-trt: {m}"))
    )
