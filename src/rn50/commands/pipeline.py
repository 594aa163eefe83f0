"""``rn50 pipeline``: export → calibrate → quantize → pt2 → build-trt → parity → profile, then the report.

The pipeline is a table of steps. Each step plans its work from the options and the work directory: a
key over its inputs and a function that runs the same command the CLI runs. The manifest records each
key and the files the step wrote; a later run reuses a step whose key and files are unchanged (and
says so). The first failing step stops the run: its error is kept, later steps are marked not run, and
every file an earlier step wrote stays as it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from rn50 import __version__
from rn50.artifacts import WorkDir, dist_version, versions
from rn50.commands.flags import flag
from rn50.commands.options import (
    CALIBRATION_COUNT,
    PARITY_COUNT,
    CalibrationOptions,
    FeedOptions,
    ThresholdOptions,
    cpu_flag,
)
from rn50.commands.outcome import QUIET, Ui
from rn50.errors import Rn50Error, UsageError
from rn50.exporter.config import ExportConfig
from rn50.jsonio import jsonable
from rn50.machine import resolve_cpu_class
from rn50.reports.render import Section
from rn50.results.pipeline_results import PipelineResult, StepResult, StepStatus
from rn50.results.profile_results import Settings
from rn50.runtimes.kinds import KINDS

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from rn50.calibration.table import CalibrationTable
    from rn50.weights import LoadedModel

log = logging.getLogger(__name__)

STEPS = ("export", "calibrate", "quantize", "pt2", "build-trt", "parity", "profile")


def select_steps(skip: list[str] | None, only: list[str] | None) -> tuple[str, ...]:
    named = [*(skip or []), *(only or [])]
    unknown = [s for s in named if s not in STEPS]
    if unknown:
        raise UsageError(f"unknown step(s) {', '.join(unknown)}", fix=f"use any of {', '.join(STEPS)}")
    if skip and only:
        raise UsageError("--skip and --only together", fix="pass one of them")
    if only:
        return tuple(s for s in STEPS if s in only)
    return tuple(s for s in STEPS if s not in (skip or []))


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(jsonable(obj), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class PipelineOptions:
    export: ExportConfig = field(default_factory=ExportConfig)
    images: Path | None = flag(
        "--images",
        default=None,
        help="Image folder to calibrate on and compare on (else sample-photo crops, held apart).",
    )
    calibration_count: int = flag(
        "--calibration-count", default=CALIBRATION_COUNT, help="Sample-photo crops to calibrate on, without --images."
    )
    calibration: CalibrationOptions = field(default_factory=CalibrationOptions)
    parity_count: int = flag(
        "--parity-count",
        default=PARITY_COUNT,
        help="Held-apart sample-photo crops parity compares on, without --images.",
    )
    thresholds: ThresholdOptions = ThresholdOptions.flag()
    profile: Settings = field(default_factory=Settings)
    skip: list[str] | None = flag(
        "--skip", default=None, cli_type=list[str] | None, help=f"Step(s) to leave out: {', '.join(STEPS)}."
    )
    only: list[str] | None = flag("--only", default=None, cli_type=list[str] | None, help="Run only these step(s).")
    force: bool = flag("--force", default=False, help="Re-run the selected steps even if their inputs did not change.")
    cpu: str = cpu_flag()

    @property
    def steps(self) -> tuple[str, ...]:
        return select_steps(self.skip, self.only)

    def feeds(self, count: int) -> FeedOptions:
        return FeedOptions(images=self.images, count=count)

    def check(self) -> None:
        from rn50.commands.export import ExportOptions

        ExportOptions(self.export).check()
        self.steps  # noqa: B018 - unknown or conflicting --skip/--only are refused here
        resolve_cpu_class(self.cpu)
        self.calibration.check()
        self.feeds(self.calibration_count).check()  # an image folder is checked before the export, not after it
        self.feeds(self.parity_count).check()
        self.profile.validate()


@dataclass(frozen=True)
class Work:
    """What a step would do: ``run`` returns (status, files to record under ``inputs``' key, detail)."""

    run: Callable[[], tuple[StepStatus, list[Path], str]]
    inputs: dict[str, Any] | None = None  # None: the command keeps its own cache (calibrate, build-trt)
    reused: str = ""  # the detail when the inputs and files are unchanged
    ready: bool = True  # False: whatever the inputs say, the step must run (an unverified export)

    @property
    def key(self) -> str | None:
        return None if self.inputs is None else digest(self.inputs)


class Pipeline:
    def __init__(self, workdir: WorkDir, options: PipelineOptions, ui: Ui = QUIET):
        """``ui.status`` hears everything (a spinner's text); ``ui.note`` one line as each step starts and ends."""
        self.workdir = workdir
        self.options = options
        self.ui = ui
        self.say = ui.status
        self.announce = ui.note
        self.loaded: LoadedModel | None = None
        self.table: CalibrationTable | None = None
        self._again: dict[str, str] = {}  # step -> why it ran again

    # --- shared inputs ---------------------------------------------------------------------------
    def model(self) -> Any:
        from rn50.weights import workdir_model

        record = self.workdir.manifest().get("model") or {}
        if self.loaded is not None and record.get("weights_sha256") == self.loaded.fingerprint:
            return self.loaded.model
        return workdir_model(self.workdir)

    def artifact_shas(self) -> dict[str, str]:
        """Every file a runtime runs (an IR's .bin included): a changed one makes parity and profile run again."""
        arts = self.workdir.artifacts()
        models = {c for a in arts if a.kind in KINDS for c in (a.name, *KINDS[a.kind].companion_names(a.name))}
        return {a.name: a.sha256 for a in arts if a.name in models}

    def reusable(self, step: str, key: str, inputs: dict[str, Any]) -> bool:
        """True if ``step`` may be reused; if it ran here before and must run again, says why."""
        why = "--force" if self.options.force else self.workdir.step_staleness(step, key, jsonable(inputs))
        if why is None:
            return True
        if self.workdir.step(step) is not None:
            self._again[step] = why
            log.warning("%s runs again: %s", step, why)
        return False

    def calibration_table(self) -> CalibrationTable:
        from rn50.calibration.table import CalibrationTable

        if self.table is not None:
            return self.table
        method = self.options.calibration.method
        art = self.workdir.current(f"calibration-{method}")
        if art is None:
            raise UsageError(
                f"no calibration table for --method {method} in {self.workdir.root}",
                fix="run the calibrate step (drop it from --skip)",
            )
        return CalibrationTable.load(self.workdir.path(art.path))

    # --- the run ---------------------------------------------------------------------------------
    def step(self, name: str) -> StepResult:
        planned = PLANS[name](self)
        if isinstance(planned, StepResult):
            return planned
        if (
            planned.inputs is not None
            and planned.key is not None
            and planned.ready
            and self.reusable(name, planned.key, planned.inputs)
        ):
            return StepResult(name, "reused", planned.reused)
        status, files, detail = planned.run()
        if planned.inputs is not None and planned.key is not None:
            self.workdir.record_step(name, planned.key, files, jsonable(planned.inputs))
        return StepResult(name, status, detail)

    def run(self) -> PipelineResult:
        """Runs the selected steps in order; stops at the first that raises an Rn50Error.
        KeyboardInterrupt propagates (nothing half-written is kept: every write is atomic)."""
        results: list[StepResult] = []
        error: Rn50Error | None = None
        for name in STEPS:
            if error is not None:
                results.append(StepResult(name, "not run", "an earlier step failed"))
                continue
            if name not in self.options.steps:
                results.append(StepResult(name, "skipped", "not selected (--skip/--only)"))
                continue
            self.say(name)
            self.announce(f"{name} …")
            start = time.perf_counter()
            try:
                result = self.step(name)
            except Rn50Error as e:
                error = type(e)(f"{name}: {e.problem}", fix=e.fix)  # the one-line error names the step
                result = StepResult(name, "failed", e.message)
            detail = (
                f"ran again ({self._again[name]}): {result.detail}"
                if result.status == "ran" and name in self._again
                else result.detail
            )
            results.append(StepResult(result.name, result.status, detail, time.perf_counter() - start))
            self.announce(f"{name}: {result.status} in {results[-1].seconds:.1f} s")
            log.info("%s: %s (%s)", name, result.status, result.detail)
        return PipelineResult(tuple(results), error)


# --- the steps: each plans its work with the command the CLI runs ------------------------------------
def plan_export(p: Pipeline) -> Work:
    from rn50.commands.export import ExportOptions, export
    from rn50.exporter.onnx_file import FP32_NAME, model_record
    from rn50.weights import kept_weights_name, load_model

    config = p.options.export
    p.say("loading the model")
    loaded = p.loaded = load_model(config.weights, depth=config.depth)
    p.workdir.check_model(model_record(loaded, config.depth))  # before anything is written
    v = versions()
    inputs = {
        "config": asdict(config),
        "weights": loaded.fingerprint,
        "versions": {k: v.get(k) for k in ("rn50", "torch", "onnx", "onnxsim")},
    }
    art = p.workdir.current(FP32_NAME)

    def run() -> tuple[StepStatus, list[Path], str]:
        p.say("exporting to ONNX and verifying")
        done = export(ExportOptions(config), p.workdir, loaded=loaded)
        if done.error is not None:
            raise done.error
        result = done.result
        kept = p.workdir.artifact(kept_weights_name(loaded.source))
        ver = result.verification
        detail = f"{result.path.name}: opset {result.opset}, {result.nodes} nodes"
        files = [result.path] + ([p.workdir.path(kept.path)] if kept else [])
        return "ran", files, detail + (f", verified (max abs {ver.max_abs:.2g})" if ver else "")

    reused = f"{art.path} (same model, weights and exporter versions)" if art is not None else ""
    return Work(run, inputs, reused, ready=art is not None and bool(art.verified))


def plan_calibrate(p: Pipeline) -> Work:
    from rn50.commands.calibrate import CalibrateOptions, calibrate, read_feeds

    options = CalibrateOptions(p.options.feeds(p.options.calibration_count), p.options.calibration)

    def run() -> tuple[StepStatus, list[Path], str]:
        feeds = read_feeds(options, p.ui)
        p.say(f"calibrating on {feeds.description}")
        result = calibrate(options, p.workdir, p.ui, feeds=feeds, reuse=not p.options.force).result
        p.table = t = result.table
        where = result.path.relative_to(p.workdir.root)
        detail = f"{where}: {t.method} {t.options}, {t.images} images ({t.set_description})"
        warn = "; ".join(feeds.warnings)
        return ("reused" if result.reused else "ran"), [], detail + (f"; warning: {warn}" if warn else "")

    return Work(run)


def plan_quantize(p: Pipeline) -> Work:
    from rn50.calibration.quantized import EMITTERS
    from rn50.commands.quantize import QuantizeOptions, quantize
    from rn50.exporter.onnx_file import fp32_artifact

    fp32, _ = fp32_artifact(p.workdir)
    table = p.calibration_table()
    options = QuantizeOptions(int8=True, fp16=True, cpu=p.options.cpu)
    cpu_class = options.cpu_class
    inputs = {
        "fp32": fp32.sha256,
        "table": table.key,
        "targets": list(EMITTERS),
        "classifier": options.classifier,
        "high_precision": options.high_precision,
        "cpu_class": cpu_class,
        "rn50": __version__,
    }

    def run() -> tuple[StepStatus, list[Path], str]:
        done = quantize(options, p.workdir, p.ui, table=table)
        detail = "; ".join(f"{r.name} cos mean {r.output.cosine_mean:.5f}" for r in done.results)
        return (
            "ran",
            [r.path for r in done.results] + done.reports,
            f"{detail} (file semantics; onnxruntime-cpu file for {cpu_class}-class CPUs)",
        )

    return Work(run, inputs, f"FP16 and INT8 artifacts (same FP32 model, calibration table and CPU class {cpu_class})")


def plan_pt2(p: Pipeline) -> Work | StepResult:
    """PyTorch's ahead-of-time path: the FP32 AOTInductor package, and the INT8 one (PT2E on the calibration images)
    where torchao is installed; reused while the model, the images, torch, torchao and this CPU's ISA are the same."""
    from rn50.calibration.budget import CLASSIFIER_PRECISIONS
    from rn50.commands.calibrate import CalibrateOptions, read_feeds
    from rn50.commands.export import pt2_sections, unverified_pt2, write_int8_package
    from rn50.exporter.onnx_file import fp32_artifact
    from rn50.exporter.pt2 import write_pt2
    from rn50.runtimes.pt2_package import TORCHAO_INSTALL, program_path, sidecar_path, this_isa
    from rn50.runtimes.registry import unavailable_reason

    reason = unavailable_reason("aoti-cpu")
    if reason:
        return StepResult("pt2", "skipped", reason)
    fp32, onnx_path = fp32_artifact(p.workdir)
    torchao = dist_version("torchao")
    int8 = torchao is not None
    feeds = read_feeds(CalibrateOptions(p.options.feeds(p.options.calibration_count), p.options.calibration), p.ui)
    v = versions()
    inputs = {
        "weights": (p.workdir.manifest().get("model") or {}).get("weights_sha256"),
        "classifier": CLASSIFIER_PRECISIONS[0],  # the package's classifier, as the quantize step's files have it
        "calibration": feeds.fingerprint if int8 else None,
        "torch": v.get("torch"),
        "torchao": torchao,
        "isa": this_isa(),
        "rn50": __version__,
    }

    def run() -> tuple[StepStatus, list[Path], str]:
        p.say("compiling the FP32 AOTInductor package")
        made = [
            write_pt2(
                p.workdir, p.model(), stem=onnx_path.name.removesuffix(".fp32.onnx"), parent_sha256=fp32.parent_sha256
            )
        ]
        if int8:
            p.say(f"PT2E: quantizing on {feeds.description}, compiling the INT8 package")
            made.append(write_int8_package(p.workdir, feeds)[0])
        for r in made:
            if (bad := unverified_pt2(r)) is not None:
                raise bad
        files = [
            f for r in made for f in (r.path, sidecar_path(r.path), *([program_path(r.path)] if r.program else []))
        ]
        detail = "; ".join(
            f"{r.path.name} compiled in {r.sidecar.compile_s:.0f} s"
            + (f" (PT2E {r.sidecar.quantize_s:.0f} s)" if r.sidecar.quantize_s else "")
            for r in made
        )
        log.info("%s", " ".join(par for r in made for sec in pt2_sections(r) for par in sec.paragraphs))
        return (
            "ran",
            files,
            detail + ("" if int8 else f"; no INT8 package: torchao is not installed ({TORCHAO_INSTALL})"),
        )

    return Work(run, inputs, "AOTInductor packages (same model, calibration images, torch, torchao and CPU ISA)")


def plan_build_trt(p: Pipeline) -> Work | StepResult:
    from rn50.commands.build_trt import ENGINE_PRECISIONS, BuildTrtOptions, build_trt
    from rn50.runtimes.registry import from_test_double, unavailable_reason
    from rn50.runtimes.trt_plan import BuildOptions

    reason = unavailable_reason("tensorrt")
    if reason:
        return StepResult("build-trt", "skipped", reason)
    max_batch = max(32, *p.options.profile.batches)

    def run() -> tuple[StepStatus, list[Path], str]:
        done = []
        for precision in ENGINE_PRECISIONS:
            p.say(f"building the TensorRT {precision} engine")
            options = BuildTrtOptions(BuildOptions(precision=precision, min_batch=1, opt_batch=8, max_batch=max_batch))
            result = build_trt(options, p.workdir, p.ui).result
            done.append((precision, result.reused))
        by = f" by {result.runtime} (a test double, not TensorRT)" if from_test_double(result.runtime) else ""
        status: StepStatus = "reused" if all(r for _, r in done) else "ran"
        return status, [], ", ".join(f"{p} {'reused' if r else 'built'}" for p, r in done) + by

    return Work(run)


def plan_parity(p: Pipeline) -> Work:
    from rn50.commands.parity import ParityOptions, parity
    from rn50.evaluation.pairs import parity_pairs
    from rn50.machine import cpu_info

    options = ParityOptions(
        feeds=p.options.feeds(p.options.parity_count),
        thresholds=p.options.thresholds,
        threads=p.options.profile.threads,
    )
    pairs, skipped = parity_pairs(p.workdir)
    feeds = options.feeds.read(status=p.ui.status)
    inputs = {
        "artifacts": p.artifact_shas(),
        "targets": [(t.runtime, t.artifact) for t in pairs],
        "feeds": feeds.fingerprint,
        "thresholds": options.thresholds.overrides,
        "cpu": cpu_info()["int8_class"],
        "rn50": __version__,
    }

    def run() -> tuple[StepStatus, list[Path], str]:
        done = parity(options, p.workdir, p.ui, planned=(pairs, skipped), feeds=feeds, model=p.model())
        report = done.report
        if done.error is not None:
            raise done.error
        return "ran", done.written, report.summary()

    return Work(run, inputs, "parity.json (same artifacts, runtimes, feeds, thresholds and CPU class)")


def plan_profile(p: Pipeline) -> Work:
    from rn50.commands.profile import ProfileOptions, profile
    from rn50.evaluation.pairs import profile_pairs
    from rn50.machine import cpu_info

    settings = p.options.profile
    pairs, skipped = profile_pairs(p.workdir, settings)
    inputs = {
        "artifacts": p.artifact_shas(),
        "targets": [(t.runtime, t.artifact) for t in pairs],
        "settings": settings,
        "cpu": cpu_info(),
        "rn50": __version__,
    }

    def run() -> tuple[StepStatus, list[Path], str]:
        done = profile(ProfileOptions(settings), p.workdir, p.ui, planned=(pairs, skipped), model_loader=p.model)
        report = done.report
        return (
            "ran",
            done.written,
            f"{len(report.measured)} measurements, {len(report.rows) - len(report.measured)} not measured",
        )

    return Work(run, inputs, "profile.json (same artifacts, runtimes, settings and machine)")


# The table: each step's name and how it plans its work, in the order they run.
PLANS: dict[str, Callable[[Pipeline], Work | StepResult]] = {
    "export": plan_export,
    "calibrate": plan_calibrate,
    "quantize": plan_quantize,
    "pt2": plan_pt2,
    "build-trt": plan_build_trt,
    "parity": plan_parity,
    "profile": plan_profile,
}
assert tuple(PLANS) == STEPS


@dataclass(frozen=True)
class PipelineOutcome:
    result: PipelineResult
    reports: list[Path]
    workdir: Path

    @property
    def error(self) -> Rn50Error | None:
        return self.result.error

    def sections(self) -> list[Section]:
        from rn50.reports.workdir_report import steps_section

        parts = [steps_section(list(self.result.steps), f"rn50 pipeline → {self.workdir}")]
        if self.reports:
            parts.append(Section("", paragraphs=["wrote " + ", ".join(str(p) for p in self.reports)]))
        return parts

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.result.steps, "failed": self.result.failed, "reports": self.reports}


def pipeline(options: PipelineOptions, workdir: WorkDir, ui: Ui = QUIET) -> PipelineOutcome:
    """The whole job: export → calibrate → quantize → pt2 → build-trt → parity → profile, then report.md/html."""
    from rn50.reports import workdir_report

    result = Pipeline(workdir, options, ui).run()
    # A run refused before any step did anything (another model's directory, ...) leaves the directory alone.
    written = workdir_report.write(workdir, list(result.steps)) if result.started else []
    return PipelineOutcome(result, written, workdir.root)
