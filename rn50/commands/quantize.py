"""``rn50 calibrate`` and ``rn50 quantize``: the calibration table, then the FP16 and INT8 artifacts with
their quality report (the work itself is in ``rn50.calibration``).

They compose: ``rn50 quantize --int8`` and ``rn50 build-trt --int8`` (when its Q/DQ file is missing)
calibrate first with the same options, then quantize with the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rn50.calibration.budget import CLASSIFIER_PRECISIONS, DEFAULT_MAX_EXCLUDED
from rn50.commands.options import CALIBRATION_COUNT, CalibrationOptions, FeedOptions
from rn50.errors import UsageError
from rn50.machine import AUTO, CPU_CHOICES, resolve_cpu_class

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from rn50.artifacts import WorkDir
    from rn50.calibration.quantized import QuantizeResult
    from rn50.calibration.table import CalibrationResult, CalibrationTable
    from rn50.feeds import FeedSet
    from rn50.metrics import Thresholds

ALL_TARGETS = "all"
HIGH_PRECISIONS = ("fp32", "fp16")  # --high-precision: the TensorRT Q/DQ file's non-INT8 parts


@dataclass(frozen=True)
class CalibrateOptions:
    feeds: FeedOptions = field(default_factory=lambda: FeedOptions(count=CALIBRATION_COUNT))
    calibration: CalibrationOptions = field(default_factory=CalibrationOptions)

    def check(self) -> None:
        self.calibration.check()  # bad options fail before images are read
        self.feeds.check()

    def read_feeds(self) -> FeedSet:
        """Options checked and the calibration images read (before any work directory is touched)."""
        self.check()
        return self.feeds.read(split="calibration")


def calibrate(options: CalibrateOptions, workdir: WorkDir, feeds: FeedSet, *, reuse: bool = True,
              progress: Callable[[int], None] | None = None) -> CalibrationResult:  # fmt: skip
    """The table for these feeds and options: the cached one under the same key (``reuse``), or a new one."""
    from rn50.calibration.table import table_for

    c = options.calibration
    return table_for(workdir, feeds, method=c.method, percentile=c.percentile, batch=c.batch, progress=progress, reuse=reuse)


def parse_targets(target: str) -> tuple[str, ...]:
    """--target: one INT8 target, or all of them."""
    from rn50.calibration.quantized import EMITTERS

    targets = tuple(EMITTERS) if target == ALL_TARGETS else (target,)
    if any(t not in EMITTERS for t in targets):
        raise UsageError(f"unknown --target {target!r}", fix=f"use {', '.join(EMITTERS)} or {ALL_TARGETS}")
    return targets


@dataclass(frozen=True)
class QuantizeOptions:
    int8: bool = False
    fp16: bool = False
    target: str = ALL_TARGETS  # --target: one INT8 target, or all
    calibrate: CalibrateOptions = field(default_factory=CalibrateOptions)
    ir: bool = False  # also OpenVINO IR of each file (written by the caller, after the quantize report)
    budget: Thresholds | None = None  # --budget: leave the most sensitive layers out of INT8 until it holds
    max_excluded: int | None = None  # --max-excluded (with --budget; DEFAULT_MAX_EXCLUDED when not given)
    high_precision: str = "fp32"  # --high-precision, tensorrt target only
    classifier: str = CLASSIFIER_PRECISIONS[0]  # --classifier: the final Gemm in float (default) or INT8
    cpu: str = AUTO  # --cpu: the INT8 class of the CPUs the onnxruntime-cpu file is for (auto: this machine's)

    @property
    def targets(self) -> tuple[str, ...]:
        return parse_targets(self.target)

    @property
    def cpu_class(self) -> str:
        """The CPU class the onnxruntime-cpu file is made for."""
        return resolve_cpu_class(self.cpu)

    @property
    def exclusion_limit(self) -> int:
        return DEFAULT_MAX_EXCLUDED if self.max_excluded is None else self.max_excluded

    def check(self) -> None:
        if not (self.int8 or self.fp16):
            raise UsageError("nothing to do", fix="pass --int8, --fp16 or both")
        targets = parse_targets(self.target)
        if self.budget is not None and not self.int8:
            raise UsageError("--budget without --int8", fix="pass --int8: the budget applies to the INT8 files")
        if self.max_excluded is not None and self.budget is None:
            raise UsageError("--max-excluded without --budget", fix="pass --budget KEY=VALUE too, or drop --max-excluded")
        if self.max_excluded is not None and self.max_excluded < 1:
            raise UsageError(f"--max-excluded {self.max_excluded} leaves nothing to search",
                             fix="pass --max-excluded 1 or more (or drop --budget to quantize every layer)")  # fmt: skip
        if self.classifier not in CLASSIFIER_PRECISIONS:
            raise UsageError(f"unknown --classifier {self.classifier!r}", fix=f"use {' or '.join(CLASSIFIER_PRECISIONS)}")
        if self.high_precision not in HIGH_PRECISIONS:
            raise UsageError(f"unknown --high-precision {self.high_precision!r}", fix=f"use {' or '.join(HIGH_PRECISIONS)}")
        if self.cpu not in CPU_CHOICES:
            resolve_cpu_class(self.cpu)  # the one refusal of an unknown --cpu
        from rn50.calibration.quantized import CPU_TARGETS

        if self.cpu != AUTO and (not self.int8 or not set(targets) & set(CPU_TARGETS)):
            raise UsageError(f"--cpu applies to the {', '.join(CPU_TARGETS)} INT8 file only",
                             fix=f"pass --int8 with --target {CPU_TARGETS[0]} or all, or drop --cpu")  # fmt: skip
        if self.high_precision != "fp32" and ("tensorrt" not in targets or not self.int8):
            raise UsageError("--high-precision applies to the TensorRT INT8 file only",
                             fix="pass --int8 with --target tensorrt or all, or drop --high-precision")  # fmt: skip
        if self.int8:
            self.calibrate.check()
        if self.ir:  # --ir needs OpenVINO: refused before any work where it is missing
            from rn50.runtimes.openvino_runner import import_openvino

            import_openvino()


@dataclass(frozen=True)
class QuantizeOutcome:
    results: list[QuantizeResult]
    reports: list[Path]


def quantize(options: QuantizeOptions, workdir: WorkDir, *, table: CalibrationTable | None = None,
             progress: Callable[[str], None] | None = None) -> QuantizeOutcome:  # fmt: skip
    """FP16 and/or INT8 (from ``table``, which ``calibrate`` made) artifacts, and quantize-report.json/.md."""
    from rn50.calibration.quantized import make_fp16_file, make_int8_files
    from rn50.reports.quantize_report import write_quality_report

    say = progress or (lambda _m: None)
    options.check()
    results = []
    if options.fp16:
        say("converting to FP16…")
        results.append(make_fp16_file(workdir))
    if options.int8:
        if table is None:
            raise ValueError("quantize --int8 needs the calibration table: call calibrate first")
        say("emitting Q/DQ models and measuring per-layer error…")
        results += make_int8_files(workdir, table, list(options.targets), budget=options.budget, max_excluded=options.exclusion_limit,
                                 high_precision=options.high_precision, classifier=options.classifier, cpu_class=options.cpu_class,
                                 progress=say)  # fmt: skip
    return QuantizeOutcome(results, write_quality_report(workdir, results))
