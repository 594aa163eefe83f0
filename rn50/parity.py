"""``rn50 parity``: every runtime × precision artifact against the PyTorch FP32 reference, on the same feeds.

INT8 artifacts run on a GPU runtime are also compared with ONNX Runtime CPU running the same Q/DQ file,
so quantization loss is told apart from a runtime bug.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rn50.artifacts import WorkDir, sha256_file, versions
from rn50.errors import CheckFailed, EnvironmentProblem, UsageError
from rn50.metrics import OutputMetrics, Thresholds, compare
from rn50.runtimes.registry import ONNX_RUNTIMES, RUNTIMES, Target, make_runner, shown_name, unavailable_reason

if TYPE_CHECKING:
    from collections.abc import Callable

    from rn50.feeds import FeedSet
    from rn50.runtimes.base import Runner

log = logging.getLogger(__name__)
OUTPUT = "logits"
FEW_IMAGES = 16  # below this a parity verdict says little, and the report says so


@dataclass(frozen=True)
class TargetResult:
    runtime: str
    artifact: str
    precision: str
    path: str
    status: str  # pass | fail | skipped | error
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
        return f"{self.runtime} · {self.artifact}"


@dataclass(frozen=True)
class ParityReport:
    feeds: dict[str, Any]
    reference: dict[str, Any]
    results: tuple[TargetResult, ...]
    machine: dict[str, Any]
    created: float = field(default_factory=time.time)

    @property
    def passed(self) -> bool:
        return not any(r.status in ("fail", "error") for r in self.results)

    @property
    def failed(self) -> list[TargetResult]:
        return [r for r in self.results if r.status in ("fail", "error")]

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
    known = {a.name: a for a in workdir.artifacts()}
    if artifacts:
        missing = [a for a in artifacts if a not in known]
        if missing:
            raise UsageError(f"no artifact named {', '.join(missing)} in {workdir.manifest_path}",
                             fix=f"use one of {', '.join(known) or '(none: run rn50 export first)'}")  # fmt: skip
    by_sha = {a.sha256: a for a in known.values() if a.kind == "onnx"}
    for art in known.values():
        if art.kind in ("onnx", "engine") and (not artifacts or art.name in artifacts):
            path = workdir.checked(art)  # a missing or changed file is refused, never measured
            parent = by_sha.get(art.parent_sha256 or "") if art.kind == "engine" and art.precision == "int8" else None
            source = workdir.checked(parent) if parent else None  # read by the INT8 cross-check: checked too
            files.append((art.name, art.precision, path, art.kind, source, art.sha256))
    for path in extra_onnx or []:
        if not Path(path).is_file():
            raise UsageError(f"ONNX file not found: {path}", fix="pass an existing file to --onnx")
        files.append((Path(path).name, onnx_precision(Path(path)), Path(path), "onnx", None, sha256_file(Path(path))))
    if not files:
        raise UsageError(f"nothing to compare in {workdir.root}", fix="run rn50 export first, or pass --onnx FILE")
    targets, skipped = [], []
    reasons = {runtime: unavailable_reason(runtime) for runtime in map(shown_name, wanted)}  # once per runtime
    for name, precision, path, kind, source, sha in files:
        for runtime, reason in reasons.items():
            if (kind == "onnx") != (runtime in ONNX_RUNTIMES):
                continue
            if reason:
                skipped.append(TargetResult(runtime, name, precision, str(path), "skipped", reason=reason, sha256=sha))
            else:
                targets.append(Target(runtime, precision, name, path, source, sha))
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
    """Returns the report and, per target label, the per-element absolute errors (for plots)."""
    if batch < 1:
        raise UsageError(f"--batch must be >= 1, got {batch}", fix="pass a positive batch size")
    say = progress or (lambda _msg: None)
    say(f"reference {reference.label}")
    with reference:
        ref = run_batches(reference, feeds, batch)
        ref_device = reference.device
    results: list[TargetResult] = []
    errors: dict[str, np.ndarray] = {}
    ort_cpu_cache: dict[str, np.ndarray] = {}

    def ort_cpu_outputs(path: Path) -> np.ndarray:
        if str(path) not in ort_cpu_cache:
            with make_runner(Target("onnxruntime-cpu", "int8", path.name, path), threads=threads) as r:
                ort_cpu_cache[str(path)] = run_batches(r, feeds, batch)
        return ort_cpu_cache[str(path)]

    for t in targets:
        say(t.label)
        start = time.perf_counter()
        try:
            with make_runner(t, threads=threads) as runner:
                got = run_batches(runner, feeds, batch)
                device = runner.device
        except EnvironmentProblem as e:
            if strict_runtimes:
                raise
            results.append(TargetResult(t.runtime, t.artifact, t.precision, str(t.path), "skipped", reason=e.message, sha256=t.sha256))
            continue
        except CheckFailed as e:
            results.append(TargetResult(t.runtime, t.artifact, t.precision, str(t.path), "error", reason=e.message, sha256=t.sha256))
            continue
        if t.runtime == "onnxruntime-cpu" and t.precision == "int8":
            ort_cpu_cache[str(t.path)] = got
        limits = thresholds(t.precision)
        m = compare(got, ref)
        failures = tuple(limits.failures(m))
        cross = None
        if t.precision == "int8" and t.runtime != "onnxruntime-cpu":
            qdq = t.source or t.path  # an engine is compared through the Q/DQ file it was built from
            if qdq.suffix == ".onnx" and qdq.is_file():
                cross = compare(got, ort_cpu_outputs(qdq))
            else:
                log.warning("%s: the Q/DQ ONNX it was built from is not in the manifest; no ONNX Runtime CPU cross-check", t.label)
        top1, top5 = _accuracy(got, feeds.labels)
        results.append(TargetResult(
            t.runtime, t.artifact, t.precision, str(t.path), "fail" if failures else "pass", device, m,
            limits.describe(), failures, None, cross, top1, top5, time.perf_counter() - start, t.sha256,
        ))  # fmt: skip
        errors[t.label] = np.abs(got.astype(np.float64) - ref).ravel()
    ref_top1, ref_top5 = _accuracy(ref, feeds.labels)
    report = ParityReport(
        feeds={"kind": feeds.kind, "description": feeds.description, "count": len(feeds), "fingerprint": feeds.fingerprint,
               "skipped_files": feeds.skipped, "warnings": list(feeds.warnings) + few_images_warning(len(feeds)),
               "labelled": feeds.labels is not None},  # fmt: skip
        reference={"runtime": reference.backend, "label": reference.label, "device": ref_device,
                   "accuracy_top1": ref_top1, "accuracy_top5": ref_top5},  # fmt: skip
        results=tuple(results + list(skipped or [])),
        machine=versions(),
    )
    return report, errors
