"""``rn50 pipeline``: export → calibrate → quantize → build-trt → parity → profile, then the report.

Each step records in the manifest a key over its inputs and the files it wrote; a later run reuses a
step whose key and files are unchanged (and says so). The first failing step stops the run: its error
is kept, later steps are marked not run, and every file an earlier step wrote stays as it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from rn50 import __version__
from rn50.artifacts import WorkDir, versions
from rn50.errors import CheckFailed, Rn50Error, UsageError
from rn50.jsonio import jsonable
from rn50.runtimes.profiling import Settings

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

log = logging.getLogger(__name__)

STEPS = ("export", "calibrate", "quantize", "build-trt", "parity", "profile")
ENGINE_PRECISIONS = ("fp32", "fp16", "int8")


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
class PipelineConfig:
    depth: int = 50
    weights: str = "seeded"
    opset: int = 18
    images: Path | None = None
    calibration_count: int = 64
    method: str = "percentile"
    percentile: float | None = None
    parity_count: int = 32
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    profile: Settings = field(default_factory=lambda: Settings(batches=(1, 8), warmup_s=0.5, duration_s=2.0))
    steps: tuple[str, ...] = STEPS
    force: bool = False  # re-run the selected steps even when their inputs did not change


@dataclass(frozen=True)
class StepResult:
    name: str
    status: str  # ran | reused | skipped | failed | not run
    detail: str
    seconds: float = 0.0


@dataclass(frozen=True)
class PipelineResult:
    steps: tuple[StepResult, ...]
    error: Rn50Error | None = None

    @property
    def failed(self) -> StepResult | None:
        return next((s for s in self.steps if s.status == "failed"), None)


class Pipeline:
    def __init__(self, workdir: WorkDir, config: PipelineConfig, *, progress: Callable[[str], None] | None = None,
                 steps: Callable[[str], None] | None = None):  # fmt: skip
        """``progress`` hears everything (a spinner's text); ``steps`` one line as each step starts and ends."""
        self.workdir = workdir
        self.config = config
        self.say = progress or (lambda _m: None)
        self.announce = steps or (lambda _m: None)
        self._loaded: Any = None
        self._table: Any = None
        self._again: dict[str, str] = {}  # step -> why it ran again

    # --- shared inputs ---------------------------------------------------------------------------
    def model(self) -> Any:
        from rn50.weights import workdir_model

        record = self.workdir.manifest().get("model") or {}
        if self._loaded is not None and record.get("weights_sha256") == self._loaded.fingerprint:
            return self._loaded.model
        return workdir_model(self.workdir)

    def artifact_shas(self) -> dict[str, str]:
        return {a.name: a.sha256 for a in self.workdir.artifacts() if a.kind in ("onnx", "engine")}

    def reusable(self, step: str, key: str) -> bool:
        """True if ``step`` may be reused; if it ran here before and must run again, says why."""
        why = "--force" if self.config.force else self.workdir.step_staleness(step, key)
        if why is None:
            return True
        if self.workdir.step(step) is not None:
            self._again[step] = why
            log.warning("%s runs again: %s", step, why)
        return False

    # --- steps -----------------------------------------------------------------------------------
    def export(self) -> StepResult:
        from rn50.exporter.run import FP32_NAME, ExportConfig, export, model_record
        from rn50.weights import SEEDED_WEIGHTS, load_model

        c = self.config
        self.say("loading the model")
        self._loaded = load_model(c.weights, depth=c.depth)
        self.workdir.check_model(model_record(self._loaded, c.depth))  # before anything is written
        config = ExportConfig(depth=c.depth, weights=c.weights, opset=c.opset)
        v = versions()
        key = digest({"config": asdict(config), "weights": self._loaded.fingerprint,
                      "versions": {k: v.get(k) for k in ("rn50", "torch", "onnx", "onnxsim")}})  # fmt: skip
        art = self.workdir.current(FP32_NAME)
        if art is not None and art.verified and self.reusable("export", key):
            return StepResult("export", "reused", f"{art.path} (same model, weights and exporter versions)")
        self.say("exporting to ONNX and verifying")
        result = export(config, self.workdir, loaded=self._loaded)
        ver = result.verification
        if ver is not None and not ver.passed:
            raise CheckFailed(f"{result.path.name} does not match the PyTorch model: {ver.failures()[0]}",
                              fix="the manifest marks it unverified; report it with --verbose")  # fmt: skip
        kept = self.workdir.artifact(SEEDED_WEIGHTS)
        self.workdir.record_step("export", key, [result.path] + ([self.workdir.path(kept.path)] if kept else []))
        detail = f"{result.path.name}: opset {result.opset}, {result.nodes} nodes"
        return StepResult("export", "ran", detail + (f", verified (max abs {ver.max_abs:.2g})" if ver else ""))

    def calibrate(self) -> StepResult:
        from rn50 import feeds as feed_sources
        from rn50.calibration.run import calibrate

        c = self.config
        feeds = feed_sources.resolve(images=c.images, count=c.calibration_count, split="calibration")
        self.say(f"calibrating on {feeds.description}")
        result = calibrate(self.workdir, feeds, method=c.method, percentile=c.percentile, reuse=not c.force)
        self._table = result.table
        t = result.table
        detail = f"{result.path.relative_to(self.workdir.root)}: {t.method} {t.options}, {t.images} images ({t.set_description})"
        warn = "; ".join(feeds.warnings)
        return StepResult("calibrate", "reused" if result.reused else "ran", detail + (f"; warning: {warn}" if warn else ""))

    def _calibration_table(self) -> Any:
        from rn50.calibration.table import CalibrationTable

        if self._table is not None:
            return self._table
        art = self.workdir.current(f"calibration-{self.config.method}")
        if art is None:
            raise UsageError(f"no calibration table for --method {self.config.method} in {self.workdir.root}",
                             fix="run the calibrate step (drop it from --skip)")  # fmt: skip
        return CalibrationTable.load(self.workdir.path(art.path))

    def quantize(self) -> StepResult:
        from rn50.calibration.run import EMITTERS, convert_fp16, fp32_artifact, quantize_int8, write_quality_report

        fp32, _ = fp32_artifact(self.workdir)
        table = self._calibration_table()
        key = digest({"fp32": fp32.sha256, "table": table.key, "targets": list(EMITTERS), "rn50": __version__})
        if self.reusable("quantize", key):
            return StepResult("quantize", "reused", "FP16 and INT8 artifacts (same FP32 model and calibration table)")
        self.say("converting to FP16")
        results = [convert_fp16(self.workdir)]
        self.say("emitting INT8 Q/DQ models")
        results += quantize_int8(self.workdir, table, list(EMITTERS))
        reports = write_quality_report(self.workdir, results)
        self.workdir.record_step("quantize", key, [r.path for r in results] + reports)
        return StepResult("quantize", "ran", "; ".join(f"{r.name} cos mean {r.output.cosine_mean:.5f}" for r in results))

    def build_trt(self) -> StepResult:
        from rn50.runtimes.build_trt import build_trt
        from rn50.runtimes.registry import STANDIN, unavailable_reason
        from rn50.runtimes.trt_plan import BuildOptions

        reason = unavailable_reason("tensorrt")
        if reason:
            return StepResult("build-trt", "skipped", reason)
        max_batch = max(32, *self.config.profile.batches)
        done = []
        for precision in ENGINE_PRECISIONS:
            self.say(f"building the TensorRT {precision} engine")
            result = build_trt(self.workdir, BuildOptions(precision=precision, min_batch=1, opt_batch=8, max_batch=max_batch))
            done.append((precision, result.reused))
        status = "reused" if all(r for _, r in done) else "ran"
        by = f" by {result.runtime} (rn50's test stand-in, not TensorRT)" if result.runtime == STANDIN else ""
        return StepResult("build-trt", status, ", ".join(f"{p} {'reused' if r else 'built'}" for p, r in done) + by)

    def parity(self) -> StepResult:
        from rn50 import feeds as feed_sources
        from rn50 import parity_report
        from rn50.metrics import thresholds_for
        from rn50.parity import plan, run_parity
        from rn50.runtimes.torch_runner import TorchRunner

        c = self.config
        targets, skipped = plan(self.workdir)
        feeds = feed_sources.resolve(images=c.images, count=c.parity_count)
        key = digest({"artifacts": self.artifact_shas(), "targets": [(t.runtime, t.artifact) for t in targets],
                      "feeds": feeds.fingerprint, "thresholds": c.thresholds, "rn50": __version__})  # fmt: skip
        if self.reusable("parity", key):
            return StepResult("parity", "reused", "parity.json (same artifacts, runtimes, feeds and thresholds)")
        report, errors = run_parity(
            TorchRunner(self.model()), targets, feeds, thresholds=lambda p: thresholds_for(p, **c.thresholds.get(p, {})),
            skipped=skipped, threads=c.profile.threads, progress=lambda m: self.say(f"parity: {m}"),
        )  # fmt: skip
        written = parity_report.write(report, errors, self.workdir.root)
        ran = [r for r in report.results if r.metrics is not None]
        if not report.passed:
            raise CheckFailed(f"parity: {report.first_failure()}", fix="see parity.md; INT8 per-layer errors are in quantize-report.md")
        self.workdir.record_step("parity", key, written)
        return StepResult("parity", "ran", f"{len(ran)} runtime × artifact pairs pass, {len(report.results) - len(ran)} skipped")

    def profile(self) -> StepResult:
        from rn50 import profile_report
        from rn50.machine import cpu_info
        from rn50.runtimes.profiling import plan, run_profile

        settings = self.config.profile
        targets, skipped = plan(self.workdir, settings)
        key = digest({"artifacts": self.artifact_shas(), "targets": [(t.runtime, t.artifact) for t in targets],
                      "settings": settings, "cpu": cpu_info(), "rn50": __version__})  # fmt: skip
        if self.reusable("profile", key):
            return StepResult("profile", "reused", "profile.json (same artifacts, runtimes, settings and machine)")
        report = run_profile(targets, settings, skipped=skipped, model_loader=self.model, progress=lambda m: self.say(f"profile: {m}"))
        written = profile_report.write(report, self.workdir.root)
        self.workdir.record_step("profile", key, written)
        return StepResult("profile", "ran", f"{len(report.measured)} measurements, {len(report.rows) - len(report.measured)} not measured")

    # --- the run ---------------------------------------------------------------------------------
    def run(self) -> PipelineResult:
        """Runs the selected steps in order; stops at the first that raises an Rn50Error.
        KeyboardInterrupt propagates (nothing half-written is kept: every write is atomic)."""
        results: list[StepResult] = []
        error: Rn50Error | None = None
        for name in STEPS:
            if error is not None:
                results.append(StepResult(name, "not run", "an earlier step failed"))
                continue
            if name not in self.config.steps:
                results.append(StepResult(name, "skipped", "not selected (--skip/--only)"))
                continue
            self.say(name)
            self.announce(f"{name} …")
            start = time.perf_counter()
            try:
                result = getattr(self, name.replace("-", "_"))()
            except Rn50Error as e:
                error = e
                result = StepResult(name, "failed", e.message)
            detail = f"ran again ({self._again[name]}): {result.detail}" if result.status == "ran" and name in self._again else result.detail
            results.append(StepResult(result.name, result.status, detail, time.perf_counter() - start))
            self.announce(f"{name}: {result.status} in {results[-1].seconds:.1f} s")
            log.info("%s: %s (%s)", name, result.status, result.detail)
        return PipelineResult(tuple(results), error)
