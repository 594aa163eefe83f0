"""``rn50 parity``: every runtime × precision artifact against the PyTorch FP32 reference, on the same feeds.

Running and comparing are two steps: every runner runs once (``run_all``), then each pair is compared
(``compare_all``). INT8 artifacts run on a GPU runtime form one more pair, with ONNX Runtime CPU running
the same Q/DQ file, so quantization loss is told apart from a runtime bug.
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
from rn50.metrics import OutputMetrics, Thresholds, compare
from rn50.runtimes.registry import (
    MODEL_KINDS,
    RUNTIMES,
    Target,
    check_names,
    label,
    make_runner,
    reads,
    result_precision,
    shown_name,
    unavailable_reason,
)

if TYPE_CHECKING:
    from collections.abc import Callable

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
    vs_onnxruntime_cpu: OutputMetrics | None = None  # INT8 on a GPU runtime: same Q/DQ file on ORT CPU
    accuracy_top1: float | None = None
    accuracy_top5: float | None = None
    seconds: float | None = None
    sha256: str | None = None  # of the file tested (checked against the manifest first)

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

    def first_failure(self) -> str:
        """The first failing result and why, for the one-line error."""
        r = self.failed[0]
        return f"{r.label}: {'; '.join(r.failures) or r.reason}"


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
    """Targets to run, and those skipped with the reason (never silently dropped)."""
    wanted = runtimes or list(RUNTIMES)
    files: list[tuple[str, str, Path, str, Path | None, str]] = []  # (name, precision, path, kind, source ONNX of an INT8 engine, sha256)
    known = workdir.by_name(artifacts)
    by_sha = {a.sha256: a for a in known.values() if a.kind == "onnx"}
    for art in known.values():
        if art.kind in MODEL_KINDS and (not artifacts or art.name in artifacts):
            path = workdir.checked(art)  # a missing or changed file is refused, never measured
            if art.kind == "ir" and art.name + "-weights" in known:
                workdir.checked(known[art.name + "-weights"])  # an IR is its .xml and its .bin
            # An INT8 engine or IR is cross-checked through the Q/DQ ONNX it was made from.
            parent = by_sha.get(art.parent_sha256 or "") if art.kind != "onnx" and art.precision == "int8" else None
            source = workdir.checked(parent) if parent else None  # read by the INT8 cross-check: checked too
            files.append((art.name, art.precision, path, art.kind, source, art.sha256))
    for path in extra_onnx or []:  # their existence is checked by ParityOptions.check
        files.append((Path(path).name, onnx_precision(Path(path)), Path(path), "onnx", None, sha256_file(Path(path))))
    if not files:
        raise UsageError(f"nothing to compare in {workdir.root}", fix="run rn50 export first, or pass --onnx FILE")
    targets, skipped = [], []
    reasons = {runtime: unavailable_reason(runtime) for runtime in map(shown_name, wanted)}  # once per runtime
    for name, precision, path, kind, source, sha in files:
        for runtime, reason in reasons.items():
            judged = result_precision(runtime, precision)
            if kind not in reads(runtime) or judged is None:
                continue
            if reason:
                skipped.append(TargetResult(runtime, name, judged, str(path), "skipped", reason=reason, sha256=sha))
            else:
                targets.append(Target(runtime, judged, name, path, source, sha))
    return targets, skipped


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
    cross_file: Path | None = None  # INT8 on another runtime: the Q/DQ file ONNX Runtime CPU ran for the cross-check


def run_target(target: Target, feeds: FeedSet, batch: int, *, threads: int | None, strict_runtimes: bool) -> Outputs:
    start = time.perf_counter()
    try:
        with make_runner(target, threads=threads) as runner:
            logits, device, seconds = run_batches(runner, feeds, batch), runner.device, time.perf_counter() - start
        return Outputs(target, logits, device, seconds=seconds, cross_file=cross_check_file(target))
    except EnvironmentProblem as e:
        if strict_runtimes:
            raise
        return Outputs(target, status="skipped", reason=e.message)
    except CheckFailed as e:
        return Outputs(target, status="error", reason=e.message)


def cross_check_file(target: Target) -> Path | None:
    """The Q/DQ ONNX an INT8 result on another runtime is compared with on ONNX Runtime CPU (None: no such pair)."""
    if target.precision != "int8" or target.runtime == "onnxruntime-cpu":
        return None
    qdq = target.source or target.path  # an engine is compared through the Q/DQ file it was built from
    if qdq is not None and qdq.suffix == ".onnx" and qdq.is_file():
        return qdq
    log.warning("%s: the Q/DQ ONNX it was built from is not in the manifest; no ONNX Runtime CPU cross-check", target.label)
    return None


def run_all(targets: list[Target], feeds: FeedSet, batch: int, *, threads: int | None, strict_runtimes: bool,
            say: Callable[[str], None]) -> tuple[list[Outputs], dict[Path, np.ndarray]]:  # fmt: skip
    """Every target's outputs, and ONNX Runtime CPU's on each Q/DQ file an INT8 result is cross-checked with
    (each file run once: taken from its own onnxruntime-cpu target where there is one)."""
    runs = []
    for t in targets:
        say(t.label)
        runs.append(run_target(t, feeds, batch, threads=threads, strict_runtimes=strict_runtimes))
    ort_cpu: dict[Path, np.ndarray] = {}
    for r in runs:
        if r.logits is not None and r.target.path is not None and r.target.runtime == "onnxruntime-cpu" and r.target.precision == "int8":
            ort_cpu[r.target.path] = r.logits
    for r in runs:
        qdq = r.cross_file
        if qdq is not None and qdq not in ort_cpu:
            say(f"onnxruntime-cpu · {qdq.name} (cross-check)")
            with make_runner(Target("onnxruntime-cpu", "int8", qdq.name, qdq), threads=threads) as runner:
                ort_cpu[qdq] = run_batches(runner, feeds, batch)
    return runs, ort_cpu


def compare_all(runs: list[Outputs], ref: np.ndarray, ort_cpu: dict[Path, np.ndarray], labels: np.ndarray | None, *,
                thresholds: Callable[[str], Thresholds]) -> tuple[list[TargetResult], dict[str, np.ndarray]]:  # fmt: skip
    """Each run against the reference (and an INT8 run against ONNX Runtime CPU on its file): verdicts, and
    per label the per-element absolute errors (for plots)."""
    results: list[TargetResult] = []
    errors: dict[str, np.ndarray] = {}
    for run in runs:
        t = run.target
        if run.logits is None:
            assert run.status is not None  # a run without outputs says why
            results.append(TargetResult(t.runtime, t.artifact, t.precision, str(t.path), run.status, reason=run.reason, sha256=t.sha256))
            continue
        got = run.logits
        limits = thresholds(t.precision)
        m = compare(got, ref)
        failures = tuple(limits.failures(m))
        cross = compare(got, ort_cpu[run.cross_file]) if run.cross_file is not None else None
        top1, top5 = _accuracy(got, labels)
        results.append(TargetResult(
            t.runtime, t.artifact, t.precision, str(t.path), "fail" if failures else "pass", run.device, m,
            limits.describe(), failures, None, cross, top1, top5, run.seconds, t.sha256,
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
    runs, ort_cpu = run_all(targets, feeds, batch, threads=threads, strict_runtimes=strict_runtimes, say=say)
    results, errors = compare_all(runs, ref, ort_cpu, feeds.labels, thresholds=thresholds)
    ref_top1, ref_top5 = _accuracy(ref, feeds.labels)
    report = ParityReport(
        feeds=FeedSummary(feeds.kind, feeds.description, len(feeds), feeds.fingerprint, feeds.skipped,
                          tuple(feeds.warnings) + tuple(few_images_warning(len(feeds))), feeds.labels is not None),  # fmt: skip
        reference=Reference(reference.backend, reference.label, ref_device, ref_top1, ref_top5),
        results=tuple(results + list(skipped or [])),
        machine=versions(),
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
    return CheckFailed(report.first_failure(), fix="see parity.md; INT8 per-layer errors are in quantize-report.md")


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
