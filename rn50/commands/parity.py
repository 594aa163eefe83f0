"""``rn50 parity``: every runtime × precision artifact against the PyTorch FP32 reference, on the same feeds.

Running and comparing are two steps: every runner runs once (``run_all``), then each pair is compared
(``compare_all``). An INT8 result has a third reference: its Q/DQ file's own semantics (the file run literally,
Q/DQ and float operators, by ONNX Runtime's CPU provider with graph optimizations off; computed once per file).
File vs PyTorch is the quantization error, judged by the INT8 thresholds; runtime vs file is the engine error,
judged by the ``engine`` thresholds. A runtime that computes something other than its file fails, and the
result names the likely cause (e.g. INT8 kernels that saturate on a CPU without VNNI) and the fix.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rn50.artifacts import WorkDir, sha256_file, versions
from rn50.commands.options import PARITY_BATCH, FeedOptions, ThresholdOptions, check_batch
from rn50.errors import CheckFailed, EnvironmentProblem, UsageError
from rn50.machine import describe
from rn50.metrics import ENGINE, OutputMetrics, Thresholds, compare
from rn50.runtimes.registry import (
    MODEL_KINDS,
    RUNTIMES,
    Target,
    check_names,
    engine_deviation,
    label,
    make_runner,
    reads,
    result_precision,
    saturates,
    shown_name,
    unavailable_reason,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from rn50.calibration.form import QdqForm
    from rn50.feeds import FeedSet
    from rn50.runtimes.base import Runner

log = logging.getLogger(__name__)
OUTPUT = "logits"
FEW_IMAGES = 16  # below this a parity verdict says little, and the report says so
Verdict = Literal["pass", "fail", "skipped", "error"]
FAILED: tuple[Verdict, ...] = ("fail", "error")
REFERENCE_DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class TargetResult:
    runtime: str
    artifact: str
    precision: str
    path: str
    status: Verdict
    device: str | None = None
    metrics: OutputMetrics | None = None
    thresholds: str = ""
    failures: tuple[str, ...] = ()
    reason: str | None = None  # why skipped / errored
    accuracy_top1: float | None = None
    accuracy_top5: float | None = None
    seconds: float | None = None
    sha256: str | None = None  # of the file tested (checked against the manifest first)
    # INT8: the Q/DQ file whose own semantics the result is compared with (an engine's or IR's source), the file's
    # error (its semantics vs PyTorch FP32, judged by the INT8 thresholds) and the engine's (the runtime vs the file,
    # judged by ``engine_thresholds``); when the engine deviates, its likely cause and the fix.
    semantics_file: str | None = None
    quantization: OutputMetrics | None = None
    engine: OutputMetrics | None = None
    engine_thresholds: str = ""
    cause: str | None = None
    fix: str | None = None

    @property
    def label(self) -> str:
        return label(self.runtime, self.artifact)


@dataclass(frozen=True)
class FeedSummary:
    """What parity compared on (parity.json's ``feeds``)."""

    kind: str
    description: str
    count: int
    fingerprint: str
    skipped_files: int
    warnings: tuple[str, ...]
    labelled: bool


@dataclass(frozen=True)
class Reference:
    """The PyTorch FP32 reference as it ran (parity.json's ``reference``)."""

    runtime: str
    label: str
    device: str
    accuracy_top1: float | None
    accuracy_top5: float | None


@dataclass(frozen=True)
class ParityReport:
    feeds: FeedSummary
    reference: Reference
    results: tuple[TargetResult, ...]
    machine: dict[str, Any]
    created: float = field(default_factory=time.time)

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def failed(self) -> list[TargetResult]:
        return [r for r in self.results if r.status in FAILED]

    @property
    def ran(self) -> list[TargetResult]:
        return [r for r in self.results if r.metrics is not None]

    def verdict_line(self) -> str:
        """The one summary of a parity run, as every report words it."""
        return (f"Parity: **{'PASS' if self.passed else 'FAIL'}** — {len(self.ran) - len(self.failed)} of {len(self.ran)} "
                "runtime × artifact pairs within thresholds")  # fmt: skip

    def summary(self) -> str:
        """One line: how many pairs passed, and for INT8 both errors at their worst (the pipeline's step detail)."""
        line = f"{len(self.ran)} runtime × artifact pairs pass, {len(self.results) - len(self.ran)} not run here"
        int8 = [r for r in self.ran if r.engine is not None and r.quantization is not None]
        if int8:
            worst_file = min(r.quantization.cosine_min for r in int8 if r.quantization is not None)
            worst_engine = min(r.engine.cosine_min for r in int8 if r.engine is not None)
            line += (f"; INT8: file vs FP32 worst cos {worst_file:.4f}, engine vs file worst cos {worst_engine:.4f} "
                     f"({len(int8)} rows)")  # fmt: skip
        return line

    def first_failure(self) -> str:
        """The first failing result and why, for the one-line error."""
        r = self.failed[0]
        cause = f" — {r.cause}" if r.cause else ""
        return f"{r.label}: {'; '.join(r.failures) or r.reason}{cause}"


def onnx_precision(path: Path) -> str:
    """fp32, fp16 or int8, from rn50's metadata or, failing that, from the graph itself."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("rn50.precision") in ("fp32", "fp16", "int8"):
        return meta["rn50.precision"]
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv") for n in model.graph.node):
        return "int8"
    if any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer):
        return "fp16"
    return "fp32"


def plan(workdir: WorkDir, *, runtimes: list[str] | None = None, artifacts: list[str] | None = None,
         extra_onnx: list[Path] | None = None) -> tuple[list[Target], list[TargetResult]]:  # fmt: skip
    """Targets to run, and those skipped with the reason (never silently dropped).

    Not run unless named with ``artifacts``: rn50's TensorRT Q/DQ file on a CPU runtime whose INT8 kernels saturate
    on its form on this CPU (it is made for TensorRT; measured, it fails its engine check). Every other pair runs,
    a file made for another CPU class included: that one fails with the cause and the fix."""
    from rn50.machine import cpu_info

    wanted = runtimes or list(RUNTIMES)
    files: list[tuple[str, str, Path, str, Path | None, str]] = []  # (name, precision, path, kind, source ONNX of an INT8 engine, sha256)
    known = workdir.by_name(artifacts)
    by_sha = {a.sha256: a for a in known.values() if a.kind == "onnx"}
    for art in known.values():
        if art.kind in MODEL_KINDS and (not artifacts or art.name in artifacts):
            path = workdir.checked(art)  # a missing or changed file is refused, never measured
            if art.kind == "ir" and art.name + "-weights" in known:
                workdir.checked(known[art.name + "-weights"])  # an IR is its .xml and its .bin
            # An INT8 engine or IR is compared with the semantics of the Q/DQ ONNX it was made from.
            parent = by_sha.get(art.parent_sha256 or "") if art.kind != "onnx" and art.precision == "int8" else None
            source = workdir.checked(parent) if parent else None  # read for the engine check: checked too
            files.append((art.name, art.precision, path, art.kind, source, art.sha256))
    for path in extra_onnx or []:  # their existence is checked by ParityOptions.check
        files.append((Path(path).name, onnx_precision(Path(path)), Path(path), "onnx", None, sha256_file(Path(path))))
    if not files:
        raise UsageError(f"nothing to compare in {workdir.root}", fix="run rn50 export first, or pass --onnx FILE")
    targets, skipped = [], []
    reasons = {runtime: unavailable_reason(runtime) for runtime in map(shown_name, wanted)}  # once per runtime
    cpu_class = str(cpu_info()["int8_class"])
    for name, precision, path, kind, source, sha in files:
        form = qdq_form(source or path) if precision == "int8" else None
        for runtime, reason in reasons.items():
            judged = result_precision(runtime, precision)
            if kind not in reads(runtime) or judged is None:
                continue
            if not reason and form is not None and form.target == "tensorrt" and saturates(runtime, form, cpu_class) and name not in (artifacts or []):
                cause, fix = engine_deviation(runtime, form, cpu_class)
                reason = f"not run unless named: {cause}; {fix} (to measure it anyway: --runtime {runtime} --artifact {name})"
            if reason:
                skipped.append(TargetResult(runtime, name, judged, str(path), "skipped", reason=reason, sha256=sha))
            else:
                targets.append(Target(runtime, judged, name, path, source, sha, form))
    return targets, skipped


def qdq_form(path: Path) -> QdqForm | None:
    """The integer form of an INT8 ONNX file (None for an engine or IR without its source)."""
    import onnx

    from rn50.calibration.form import form_of

    return form_of(onnx.load(str(path), load_external_data=False)) if path.suffix == ".onnx" else None


def few_images_warning(count: int) -> list[str]:
    if count >= FEW_IMAGES:
        return []
    return [f"only {count} image(s): too few for the verdict to mean much; compare on {FEW_IMAGES} or more (--count, --images)"]


def run_batches(runner: Runner, feeds: FeedSet, batch: int) -> np.ndarray:
    return np.concatenate([runner.infer({"input": b})[OUTPUT] for b in feeds.batches(batch)])


def _accuracy(logits: np.ndarray, labels: np.ndarray | None) -> tuple[float | None, float | None]:
    if labels is None:
        return None, None
    top5 = np.argsort(-logits, 1)[:, :5]
    return float((top5[:, 0] == labels).mean()), float((top5 == labels[:, None]).any(1).mean())


@dataclass(frozen=True)
class Outputs:
    """One runner's logits over the feeds, or why it could not run."""

    target: Target
    logits: np.ndarray | None = None
    device: str | None = None
    status: Verdict | None = None  # skipped | error when it did not run
    reason: str | None = None
    seconds: float | None = None


def run_target(target: Target, feeds: FeedSet, batch: int, *, threads: int | None, strict_runtimes: bool) -> Outputs:
    start = time.perf_counter()
    try:
        with make_runner(target, threads=threads) as runner:
            logits, device, seconds = run_batches(runner, feeds, batch), runner.device, time.perf_counter() - start
        return Outputs(target, logits, device, seconds=seconds)
    except EnvironmentProblem as e:
        if strict_runtimes:
            raise
        return Outputs(target, status="skipped", reason=e.message)
    except CheckFailed as e:
        return Outputs(target, status="error", reason=e.message)


SEMANTICS = "file semantics"  # how the third reference is named in progress lines and reports


def semantics(qdq: Path, feeds: FeedSet, batch: int, *, threads: int | None) -> np.ndarray:
    """The logits a Q/DQ file says it computes: ONNX Runtime's CPU provider with graph optimizations off (Q/DQ
    and float operators run as written, no integer kernels), so the same on every CPU up to float rounding."""
    from rn50.runtimes.ort_runner import OnnxRuntimeRunner

    with OnnxRuntimeRunner(qdq, provider="cpu", threads=threads, optimize=False, label=f"{SEMANTICS} · {qdq.name}") as runner:
        return run_batches(runner, feeds, batch)


def run_all(targets: list[Target], feeds: FeedSet, batch: int, *, threads: int | None, strict_runtimes: bool,
            say: Callable[[str], None]) -> tuple[list[Outputs], dict[Path, np.ndarray]]:  # fmt: skip
    """Every target's outputs, and the semantics of every Q/DQ file an INT8 result ran (each file once)."""
    runs = []
    for t in targets:
        say(t.label)
        runs.append(run_target(t, feeds, batch, threads=threads, strict_runtimes=strict_runtimes))
    files: dict[Path, np.ndarray] = {}
    for r in runs:
        qdq = r.target.qdq_file
        if r.logits is None or qdq is None or qdq in files:
            continue
        if not qdq.is_file():
            log.warning("%s: the Q/DQ ONNX it was made from is not in the manifest; no engine check", r.target.label)
            continue
        say(f"{SEMANTICS} · {qdq.name}")
        files[qdq] = semantics(qdq, feeds, batch, threads=threads)
    return runs, files


def compare_all(runs: list[Outputs], ref: np.ndarray, files: dict[Path, np.ndarray], labels: np.ndarray | None, *,
                thresholds: Callable[[str], Thresholds]) -> tuple[list[TargetResult], dict[str, np.ndarray]]:  # fmt: skip
    """Each run against the reference (and an INT8 run's file against the reference, the run against its file):
    verdicts, and per label the per-element absolute errors (for plots)."""
    from rn50.machine import cpu_info

    results: list[TargetResult] = []
    errors: dict[str, np.ndarray] = {}
    cpu_class = str(cpu_info()["int8_class"])
    for run in runs:
        t = run.target
        if run.logits is None:
            assert run.status is not None  # a run without outputs says why
            results.append(TargetResult(t.runtime, t.artifact, t.precision, str(t.path), run.status, reason=run.reason, sha256=t.sha256))
            continue
        got = run.logits
        limits = thresholds(t.precision)
        m = compare(got, ref)
        failures = list(limits.failures(m))
        qdq = t.qdq_file
        quantization = engine = None
        cause = fix = None
        engine_limits = thresholds(ENGINE)
        if qdq is not None and qdq in files:
            quantization, engine = compare(files[qdq], ref), compare(got, files[qdq])
            failures += [f"file vs FP32: {f}" for f in limits.failures(quantization)]
            deviates = [f"engine vs file: {f}" for f in engine_limits.failures(engine)]
            if deviates:
                cause, fix = engine_deviation(t.runtime, t.form, cpu_class)
            failures += deviates
        top1, top5 = _accuracy(got, labels)
        results.append(TargetResult(
            t.runtime, t.artifact, t.precision, str(t.path), "fail" if failures else "pass", run.device, m,
            limits.describe(), tuple(failures), None, top1, top5, run.seconds, t.sha256,
            str(qdq) if engine is not None else None, quantization, engine,
            engine_limits.describe() if engine is not None else "", cause, fix,
        ))  # fmt: skip
        errors[t.label] = np.abs(got.astype(np.float64) - ref).ravel()
    return results, errors


def run_parity(
    reference: Runner,
    targets: list[Target],
    feeds: FeedSet,
    *,
    thresholds: Callable[[str], Thresholds],
    batch: int = 8,
    skipped: list[TargetResult] | None = None,
    strict_runtimes: bool = False,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[ParityReport, dict[str, np.ndarray]]:
    """Returns the report and, per target label, the per-element absolute errors (for plots). The options
    were checked by ``ParityOptions.check``."""
    say = progress or (lambda _msg: None)
    say(f"reference {reference.label}")
    with reference:
        ref = run_batches(reference, feeds, batch)
        ref_device = reference.device
    runs, files = run_all(targets, feeds, batch, threads=threads, strict_runtimes=strict_runtimes, say=say)
    results, errors = compare_all(runs, ref, files, feeds.labels, thresholds=thresholds)
    ref_top1, ref_top5 = _accuracy(ref, feeds.labels)
    report = ParityReport(
        feeds=FeedSummary(feeds.kind, feeds.description, len(feeds), feeds.fingerprint, feeds.skipped,
                          tuple(feeds.warnings) + tuple(few_images_warning(len(feeds))), feeds.labels is not None),  # fmt: skip
        reference=Reference(reference.backend, reference.label, ref_device, ref_top1, ref_top5),
        results=tuple(results + list(skipped or [])),
        machine=versions() | describe(),
    )
    return report, errors


@dataclass(frozen=True)
class ParityOptions:
    """``rn50 parity``: the feeds, the targets (filters and extra files), the thresholds and the reference."""

    feeds: FeedOptions = field(default_factory=FeedOptions)
    batch: int = PARITY_BATCH
    runtimes: list[str] | None = None
    artifacts: list[str] | None = None
    onnx: list[Path] | None = None
    thresholds: ThresholdOptions = field(default_factory=ThresholdOptions)
    reference_device: str = "cpu"
    threads: int | None = None

    def check(self) -> None:
        from rn50.machine import check_threads

        check_names("runtime", self.runtimes)
        if self.reference_device not in REFERENCE_DEVICES:
            raise UsageError(f"--reference-device {self.reference_device!r}", fix=f"use {' or '.join(REFERENCE_DEVICES)}")
        if self.threads is not None:
            check_threads(self.threads)
        check_batch(self.batch)
        for path in self.onnx or []:
            if not Path(path).is_file():
                raise UsageError(f"ONNX file not found: {path}", fix="pass an existing file to --onnx")
        self.feeds.check()


@dataclass(frozen=True)
class ParityOutcome:
    report: ParityReport
    written: list[Path]


def failure(report: ParityReport) -> CheckFailed:
    """The one error a failed parity run ends with (the CLI's and the pipeline's)."""
    first = report.failed[0]
    return CheckFailed(report.first_failure(), fix=first.fix or "see parity.md; INT8 per-layer errors are in quantize-report.md")


def parity(options: ParityOptions, workdir: WorkDir, *, planned: tuple[list[Target], list[TargetResult]] | None = None,
           feeds: FeedSet | None = None, model: Any = None, progress: Callable[[str], None] | None = None) -> ParityOutcome:  # fmt: skip
    """The command: plan (unless ``planned``), run the reference and every target, compare, write parity.json/.md/.png."""
    from rn50.reports import parity as parity_report
    from rn50.runtimes.torch_runner import TorchRunner
    from rn50.weights import workdir_model

    options.check()
    targets, skipped = planned or plan(workdir, runtimes=options.runtimes, artifacts=options.artifacts, extra_onnx=options.onnx)
    feeds = feeds or options.feeds.read()
    reference = TorchRunner(model if model is not None else workdir_model(workdir), device=options.reference_device)
    report, errors = run_parity(reference, targets, feeds, thresholds=options.thresholds.limits, batch=options.batch,
                                skipped=skipped, strict_runtimes=bool(options.runtimes), threads=options.threads,
                                progress=progress)  # fmt: skip
    return ParityOutcome(report, parity_report.write(report, errors, workdir.root))
