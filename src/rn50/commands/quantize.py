"""``rn50 quantize``: the FP16 file and each INT8 target's Q/DQ file from the calibration table (made first with the
same options), linted, with the per-layer quality report; with ``--ir`` their OpenVINO IR (the work itself is in
``rn50.calibration``). The pipeline calls it with the table it made."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rn50.calibration.budget import CLASSIFIER_PRECISIONS, DEFAULT_MAX_EXCLUDED
from rn50.commands.calibrate import CalibrateOptions, calibrate, read_feeds
from rn50.commands.export import (
    export_ir,
    ir_dict,
    ir_flag,
    ir_sections,
    pt2_dict,
    pt2_sections,
    unverified_ir,
    unverified_pt2,
    write_int8_package,
)
from rn50.commands.flags import flag
from rn50.commands.options import cpu_flag, parse_budget
from rn50.commands.outcome import QUIET, Ui
from rn50.errors import UsageError
from rn50.machine import AUTO, CPU_CHOICES, resolve_cpu_class
from rn50.reports.render import Section
from rn50.runtimes.qdq_form import CPU_TARGETS, QDQ_TARGETS, QDQ_TENSORRT

if TYPE_CHECKING:
    from pathlib import Path

    from rn50.artifacts import WorkDir
    from rn50.calibration.quantized import MethodScore, QuantizeResult
    from rn50.calibration.table import CalibrationTable
    from rn50.errors import CheckFailed
    from rn50.exporter.openvino_ir import IrResult
    from rn50.exporter.pt2 import Pt2Result
    from rn50.metrics import Thresholds

ALL_TARGETS = "all"
HIGH_PRECISIONS = ("fp32", "fp16")  # --high-precision: the TensorRT Q/DQ file's non-INT8 parts


def parse_targets(target: str) -> tuple[str, ...]:
    """--target: one INT8 target, or all of them."""
    targets = QDQ_TARGETS if target == ALL_TARGETS else (target,)
    if any(t not in QDQ_TARGETS for t in targets):
        raise UsageError(f"unknown --target {target!r}", fix=f"use {', '.join(QDQ_TARGETS)} or {ALL_TARGETS}")
    return targets


@dataclass(frozen=True)
class QuantizeOptions:
    int8: bool = flag(
        "--int8", default=False, help="INT8 Q/DQ files from the calibration table (made first when missing)."
    )
    fp16: bool = flag("--fp16", default=False, help="The FP16 file, with float32 input and output.")
    target: str = flag("--target", default=ALL_TARGETS, help=f"INT8 target: {', '.join(QDQ_TARGETS)} or {ALL_TARGETS}.")
    calibrate: CalibrateOptions = field(default_factory=CalibrateOptions)
    ir: bool = ir_flag()
    budget: Thresholds | None = flag(
        "--budget",
        default=None,
        parse=parse_budget,
        cli_type=list[str] | None,
        help="INT8 accuracy budget vs FP32, KEY=VALUE[,KEY=VALUE] (min_cosine_mean, min_cosine, min_top1, max_abs): "
        "the most sensitive layers are left out of INT8 until it holds.",
    )
    max_excluded: int | None = flag(
        "--max-excluded",
        default=None,
        help=f"With --budget: most layers left out (default {DEFAULT_MAX_EXCLUDED}); exit 1 if the budget still fails.",
    )
    high_precision: str = flag(
        "--high-precision",
        default="fp32",
        help="TensorRT Q/DQ file: precision of its non-INT8 parts, fp32 or fp16 (FP32 input and output either way).",
    )
    classifier: str = flag(
        "--classifier",
        default=CLASSIFIER_PRECISIONS[0],
        help="The final Gemm in float or int8 (float: measured, more accurate for ~1% CPU latency).",
    )
    cpu: str = cpu_flag()
    pt2: bool = flag(
        "--pt2",
        default=False,
        help="With --int8: also PyTorch's INT8 path — PT2E quantization (torchao's X86 Inductor quantizer, with its "
        "own observers) on the same calibration images, compiled into an AOTInductor package (.pt2) for this CPU and "
        "verified against its quantized program.",
    )
    keep_float: list[str] | None = flag(
        "--keep-float",
        default=None,
        cli_type=list[str] | None,
        help="Layers left out of INT8, by PyTorch module (conv1, layer4.2.conv3; a residual Add: layer1.0.add) or "
        "ONNX node: e.g. where parity says the failing inputs depart.",
    )

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
        if self.pt2 and not self.int8:
            raise UsageError("--pt2 without --int8", fix="pass --int8: --pt2 adds PyTorch's INT8 package")
        if not (self.int8 or self.fp16):
            raise UsageError("nothing to do", fix="pass --int8, --fp16 or both")
        targets = parse_targets(self.target)
        if self.budget is not None and not self.int8:
            raise UsageError("--budget without --int8", fix="pass --int8: the budget applies to the INT8 files")
        if self.keep_float and not self.int8:
            raise UsageError("--keep-float without --int8", fix="pass --int8: it leaves layers of the INT8 files float")
        if self.max_excluded is not None and self.budget is None:
            raise UsageError(
                "--max-excluded without --budget", fix="pass --budget KEY=VALUE too, or drop --max-excluded"
            )
        if self.max_excluded is not None and self.max_excluded < 1:
            raise UsageError(
                f"--max-excluded {self.max_excluded} leaves nothing to search",
                fix="pass --max-excluded 1 or more (or drop --budget to quantize every layer)",
            )
        if self.classifier not in CLASSIFIER_PRECISIONS:
            raise UsageError(
                f"unknown --classifier {self.classifier!r}", fix=f"use {' or '.join(CLASSIFIER_PRECISIONS)}"
            )
        if self.high_precision not in HIGH_PRECISIONS:
            raise UsageError(
                f"unknown --high-precision {self.high_precision!r}", fix=f"use {' or '.join(HIGH_PRECISIONS)}"
            )
        if self.cpu not in CPU_CHOICES:
            resolve_cpu_class(self.cpu)  # the one refusal of an unknown --cpu
        if self.cpu != AUTO and (not self.int8 or not set(targets) & set(CPU_TARGETS)):
            raise UsageError(
                f"--cpu applies to the {', '.join(CPU_TARGETS)} INT8 file only",
                fix=f"pass --int8 with --target {CPU_TARGETS[0]} or all, or drop --cpu",
            )
        if self.high_precision != "fp32" and (QDQ_TENSORRT not in targets or not self.int8):
            raise UsageError(
                "--high-precision applies to the TensorRT INT8 file only",
                fix="pass --int8 with --target tensorrt or all, or drop --high-precision",
            )
        if self.pt2:  # torchao and a C++ compiler: refused before any work where one is missing
            from rn50.errors import EnvironmentProblem
            from rn50.runtimes.pt2_package import import_torchao
            from rn50.runtimes.registry import unavailable_reason

            import_torchao()
            reason = unavailable_reason("aoti-cpu")
            if reason:
                raise EnvironmentProblem(f"cannot make the INT8 package: {reason}", fix="install it, or drop --pt2")
        if self.int8:
            self.calibrate.check(auto=True)
        if self.ir:  # --ir needs OpenVINO: refused before any work where it is missing
            from rn50.runtimes.openvino_runner import import_openvino

            import_openvino()


@dataclass(frozen=True)
class QuantizeOutcome:
    results: list[QuantizeResult]
    reports: list[Path]
    irs: list[IrResult] = field(default_factory=list)
    table: Any = None  # the calibration table's outcome, when this run made or reused it
    missed: CheckFailed | None = None  # --budget not met for some target (the others' files were written)
    methods: dict[str, list[MethodScore]] = field(default_factory=dict)  # --method auto: per target, best first
    pt2: Pt2Result | None = None  # --pt2: PyTorch's INT8 package
    not_pt2: tuple[str, ...] = ()  # --keep-float layers that name no layer PT2E quantizes (residual Adds)

    @property
    def error(self) -> CheckFailed | None:
        return self.missed or unverified_ir(self.irs) or unverified_pt2(self.pt2)

    def sections(self) -> list[Section]:
        from rn50.reports.quantize_report import summary_sections

        parts = self.table.sections() if self.table is not None else []
        parts += [methods_section(self.methods)] if self.methods else []
        parts += summary_sections(self.results)
        parts.append(Section("", paragraphs=["wrote " + ", ".join(str(p) for p in self.reports)]))
        if self.not_pt2:
            parts.append(
                Section(
                    "",
                    paragraphs=[
                        f"not left out of PyTorch's INT8 package: {', '.join(self.not_pt2)} (a residual Add: PT2E "
                        "quantizes an Add with the convolution before it)"
                    ],
                )
            )
        return parts + pt2_sections(self.pt2) + ir_sections(self.irs)

    def to_dict(self) -> list[dict[str, Any]]:
        return (
            [
                {
                    "name": r.name,
                    "path": r.path,
                    "target": r.target,
                    "output": r.output.to_dict(),
                    "worst_layers": r.layers[:5],
                    "notes": r.notes,
                    "form": r.form,
                }
                for r in self.results
            ]
            + [ir_dict(r) for r in self.irs]
            + ([{"methods": self.methods}] if self.methods else [])
            + ([{"pt2": pt2_dict(self.pt2)}] if self.pt2 is not None else [])
        )


def methods_section(methods: dict[str, list[MethodScore]]) -> Section:
    from rn50.calibration.quantized import CHOICE_CROPS

    lo, hi = CHOICE_CROPS
    return Section(
        "Calibration methods compared (--method auto)",
        "calibration-methods",
        paragraphs=[
            f"Each method's INT8 file (every layer INT8) against the FP32 graph on held-apart sample crops {lo + 1}–"
            f"{hi} of the evaluation split (apart from calibration, and from the {lo} the report and parity judge "
            "on), as the file computes; the best cosine mean is kept."
        ],
        header=["target", "method", "cos mean", "cos worst", "SQNR dB", "kept"],
        rows=[
            [
                target,
                s.method,
                f"{s.output.cosine_mean:.6f}",
                f"{s.output.cosine_min:.6f}",
                f"{s.output.sqnr_db:.1f}",
                "yes" if i == 0 else "",
            ]
            for target, scores in methods.items()
            for i, s in enumerate(scores)
        ],
    )


def _auto_tables(options: QuantizeOptions, workdir: WorkDir, ui: Ui) -> dict[str, CalibrationTable]:
    """--method auto: a table per method, on the same images (each cached as its method's)."""
    import dataclasses

    from rn50.calibration.ranges import METHODS

    feeds = read_feeds(options.calibrate, ui)
    tables = {}
    for method in METHODS:
        opts = dataclasses.replace(
            options.calibrate, calibration=dataclasses.replace(options.calibrate.calibration, method=method)
        )
        tables[method] = calibrate(opts, workdir, ui, feeds=feeds).result.table
    return tables


def quantize(
    options: QuantizeOptions, workdir: WorkDir, ui: Ui = QUIET, *, table: CalibrationTable | None = None
) -> QuantizeOutcome:
    """Write FP16 and/or INT8 (per target) ONNX artifacts, linted, with a per-layer quality report."""
    from rn50.calibration.quantized import BudgetMissed, compare_methods, make_fp16_file, make_int8_files
    from rn50.calibration.ranges import AUTO_METHOD
    from rn50.reports.quantize_report import write_quality_report

    calibrated = None
    methods: dict[str, list[MethodScore]] = {}
    tables: dict[str, CalibrationTable] = {}  # each INT8 target's table
    if options.int8 and table is None and options.calibrate.calibration.method == AUTO_METHOD:
        all_tables = _auto_tables(options, workdir, ui)
        ui.status("comparing calibration methods…")
        methods = compare_methods(
            workdir,
            all_tables,
            list(options.targets),
            high_precision=options.high_precision,
            classifier=options.classifier,
            cpu_class=options.cpu_class,
        )
        tables = {target: all_tables[scores[0].method] for target, scores in methods.items()}
    elif options.int8:
        if table is None:
            calibrated = calibrate(options.calibrate, workdir, ui)
            table = calibrated.result.table
        tables = dict.fromkeys(options.targets, table)
    results = []
    missed = None
    if options.fp16:
        ui.status("converting to FP16…")
        results.append(make_fp16_file(workdir))
    if options.int8:
        ui.status("emitting Q/DQ models and measuring per-layer error…")
        try:
            results += make_int8_files(
                workdir,
                tables,
                budget=options.budget,
                max_excluded=options.exclusion_limit,
                high_precision=options.high_precision,
                classifier=options.classifier,
                cpu_class=options.cpu_class,
                progress=ui.status,
                keep_float=tuple(options.keep_float or ()),
            )
        except BudgetMissed as e:
            results += e.written
            missed = e
    if not results:
        raise missed or UsageError("nothing to quantize", fix="pass --int8 and/or --fp16")
    reports = write_quality_report(workdir, results)
    irs = []
    if options.ir:
        ui.status("writing OpenVINO IR…")
        irs = export_ir(workdir, [r.name for r in results])
    pt2: Pt2Result | None = None
    not_pt2: tuple[str, ...] = ()
    if options.pt2:
        feeds = read_feeds(options.calibrate, ui)
        ui.status(f"PT2E: quantizing on {feeds.description} and compiling the INT8 AOTInductor package…")
        pt2, not_pt2 = write_int8_package(
            workdir,
            feeds,
            classifier=options.classifier,
            leave_out=tuple(options.keep_float or ()) + searched_out(results),
            budget=options.budget,
        )
    return QuantizeOutcome(results, reports, irs, calibrated, missed, methods, pt2, not_pt2)


def searched_out(results: list[QuantizeResult]) -> tuple[str, ...]:
    """The layers a budget search left out of INT8, for PyTorch's INT8 package: the onnxruntime-cpu file's (its form,
    uint8 activations and int8 per-channel weights, is PT2E's), else the first searched file's."""
    searched = [r for r in results if r.search is not None]
    chosen = next((r for r in searched if r.target in CPU_TARGETS), searched[0] if searched else None)
    return chosen.search.excluded if chosen is not None and chosen.search is not None else ()
