"""How parity runs and compares: every runner runs once on the same feeds (``run_all``), then each result is
compared with the PyTorch FP32 reference (``compare_all``). An INT8 result has a third reference: its Q/DQ file's own
semantics (the file run literally, Q/DQ and float operators, by ONNX Runtime's CPU provider with graph optimizations
off; computed once per file). File vs PyTorch is the quantization error, judged by the INT8 thresholds; runtime vs
file is the runtime's fidelity to its file, judged by the ``fidelity`` thresholds. A runtime that computes something
other than its file fails, and the result names the likely cause (e.g. INT8 kernels that saturate on a CPU without
VNNI) and the fix.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rn50.artifacts import versions
from rn50.errors import CheckFailed, EnvironmentProblem
from rn50.evaluation.explanation import diagnose
from rn50.evaluation.semantics import SEMANTICS, run_batches, semantics
from rn50.machine import describe
from rn50.metrics import CLASSIFIER, FIDELITY, RUNTIME_VS_FILE, PerInput, compare, for_head, input_verdict
from rn50.results.parity_results import FeedSummary, PairResult, ParityReport, Reference, Verdict
from rn50.runtimes.registry import Pair, fidelity_deviation, make_runner
from rn50.words import opt

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from rn50.artifacts import WorkDir
    from rn50.feeds import FeedSet
    from rn50.metrics import Thresholds
    from rn50.runtimes.base import Runner

log = logging.getLogger(__name__)
REFERENCE_BATCH = 8  # the batch the PyTorch reference runs at where the caller gives none


FEW_IMAGES = 16  # below this a parity verdict says little, and the report says so


def class_count_warning(feeds: FeedSet, outputs: int) -> list[str]:
    """A class index naming another number of classes than the model has outputs: the labels cannot mean what
    they say (a classes.txt of 2 names against 1000 outputs)."""
    if feeds.classes is None or feeds.classes == outputs:
        return []
    return [
        f"the class index names {feeds.classes} classes but the model has {outputs} outputs: accuracy compares "
        "labels with output positions, so it means something only if they are the same classes in the same order"
    ]


def few_images_warning(count: int) -> list[str]:
    if count >= FEW_IMAGES:
        return []
    return [
        f"only {count} image(s): too few for the verdict to mean much; compare on {FEW_IMAGES} or more "
        f"({opt('count')}, "
        f"{opt('images')})"
    ]


def _accuracy(logits: np.ndarray, labels: np.ndarray | None) -> tuple[float | None, float | None]:
    if labels is None:
        return None, None
    top5 = np.argsort(-logits, 1)[:, :5]
    return float((top5[:, 0] == labels).mean()), float((top5 == labels[:, None]).any(1).mean())


@dataclass(frozen=True)
class Outputs:
    """One runner's logits over the feeds, or why it could not run."""

    pair: Pair
    logits: np.ndarray | None = None
    device: str | None = None
    status: Verdict | None = None  # skipped | error when it did not run
    reason: str | None = None
    seconds: float | None = None


def run_target(
    pair: Pair,
    feeds: FeedSet,
    batch: int,
    *,
    threads: int | None,
    strict_runtimes: bool,
    model: Callable[[], Any] | None = None,
) -> Outputs:
    """``model``: loads the PyTorch model, for a pair that runs it (compiled PyTorch)."""
    start = time.perf_counter()
    try:
        with make_runner(pair, threads=threads, model=model) as runner:
            logits, device, seconds = run_batches(runner, feeds, batch), runner.device, time.perf_counter() - start
        return Outputs(pair, logits, device, seconds=seconds)
    except EnvironmentProblem as e:
        if strict_runtimes:
            raise
        return Outputs(pair, status="skipped", reason=e.message)
    except CheckFailed as e:
        return Outputs(pair, status="error", reason=e.message)


def run_all(
    pairs: list[Pair],
    feeds: FeedSet,
    batch: int,
    *,
    threads: int | None,
    strict_runtimes: bool,
    say: Callable[[str], None],
    model: Callable[[], Any] | None = None,
) -> tuple[list[Outputs], dict[Path, np.ndarray]]:
    """Every target's outputs, and the semantics of every Q/DQ file an INT8 result ran (each file once)."""
    runs = []
    for t in pairs:
        say(t.label)
        runs.append(run_target(t, feeds, batch, threads=threads, strict_runtimes=strict_runtimes, model=model))
    files: dict[Path, np.ndarray] = {}
    for r in runs:
        qdq = r.pair.qdq_file
        if r.logits is None or qdq is None or qdq in files:
            continue
        if not qdq.is_file():
            log.warning("%s: the Q/DQ ONNX it was made from is not in the manifest; no fidelity check", r.pair.label)
            continue
        say(f"{SEMANTICS} · {qdq.name}")
        files[qdq] = semantics(qdq, feeds, batch, threads=threads)
    return runs, files


def compare_all(
    runs: list[Outputs],
    ref: np.ndarray,
    files: dict[Path, np.ndarray],
    labels: np.ndarray | None,
    *,
    thresholds: Callable[[str], Thresholds],
    names: tuple[str, ...] = (),
    reference_top1: float | None = None,
    classes: bool = True,
) -> tuple[list[PairResult], dict[str, np.ndarray]]:
    """Each run against the reference (and an INT8 run's file against the reference, the run against its file):
    verdicts, and per label the per-element absolute errors (for plots)."""
    from rn50.machine import cpu_info

    results: list[PairResult] = []
    errors: dict[str, np.ndarray] = {}
    cpu_class = str(cpu_info()["int8_class"])
    for run in runs:
        t = run.pair
        if run.logits is None:
            assert run.status is not None  # a run without outputs says why
            results.append(
                PairResult(
                    t.runtime, t.artifact, t.precision, str(t.path), run.status, reason=run.reason, sha256=t.sha256
                )
            )
            continue
        got = run.logits
        limits = thresholds(t.precision)
        m = compare(got, ref, classes=classes)
        failures = list(limits.failures(m))
        qdq = t.qdq_file
        quantization = fidelity = None
        cause = fix = None
        fidelity_limits = thresholds(FIDELITY)
        if qdq is not None and qdq in files:
            quantization, fidelity = (
                compare(files[qdq], ref, classes=classes),
                compare(got, files[qdq], classes=classes),
            )
            failures += [f"file vs FP32: {f}" for f in limits.failures(quantization)]
            deviates = [f"{RUNTIME_VS_FILE}: {f}" for f in fidelity_limits.failures(fidelity)]
            if deviates:
                cause, fix = fidelity_deviation(t.runtime, t.form, cpu_class)
            failures += deviates
        top1, top5 = _accuracy(got, labels)
        failures += limits.accuracy_failures(reference_top1, top1)
        inputs = PerInput.of(got, ref)
        file_inputs = PerInput.of(files[qdq], ref) if fidelity is not None and qdq is not None else None
        # The verdict hangs on the inputs of what fails: an INT8 file that fails vs FP32 is judged on its inputs.
        judged = file_inputs if file_inputs is not None and quantization is not None else inputs
        verdict = input_verdict(judged, names, limits)
        results.append(
            PairResult(
                t.runtime,
                t.artifact,
                t.precision,
                str(t.path),
                "fail" if failures else "pass",
                run.device,
                m,
                limits.describe(),
                tuple(failures),
                None,
                top1,
                top5,
                run.seconds,
                t.sha256,
                str(qdq) if fidelity is not None else None,
                quantization,
                fidelity,
                fidelity_limits.describe() if fidelity is not None else "",
                cause,
                fix,
                inputs,
                file_inputs,
                verdict,
            )
        )
        errors[t.label] = np.abs(got.astype(np.float64) - ref).ravel()
    return results, errors


def run_parity(
    reference: Runner,
    pairs: list[Pair],
    feeds: FeedSet,
    *,
    thresholds: Callable[[str], Thresholds],
    batch: int = 8,
    skipped: list[PairResult] | None = None,
    strict_runtimes: bool = False,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
    fp32_onnx: Path | None = None,
    head: str = CLASSIFIER,
) -> tuple[ParityReport, dict[str, np.ndarray]]:
    """Returns the report and, per pair label, the per-element absolute errors (for plots). The options
    were checked by ``ParityOptions.check``. ``fp32_onnx``: the FP32 graph the INT8 files were made from, for the
    cause of a failing INT8 row per input. ``head`` "embedding": judged without top-1/top-5 or accuracy."""
    classes = head == CLASSIFIER
    judged = thresholds
    thresholds = lambda precision: for_head(judged(precision), head)  # noqa: E731
    say = progress or (lambda _msg: None)
    say(f"reference {reference.label}")
    with reference:
        ref = run_batches(reference, feeds, batch)
        ref_device = reference.device
    model = getattr(reference, "model", None)  # the reference's PyTorch model, for compiled PyTorch pairs
    runs, files = run_all(
        pairs,
        feeds,
        batch,
        threads=threads,
        strict_runtimes=strict_runtimes,
        say=say,
        model=(lambda: model) if model is not None else None,
    )
    labels = feeds.labels if classes else None
    ref_top1, ref_top5 = _accuracy(ref, labels)
    results, errors = compare_all(
        runs,
        ref,
        files,
        labels,
        thresholds=thresholds,
        names=feeds.names,
        reference_top1=ref_top1,
        classes=classes,
    )
    results = diagnose(
        results,
        {run.pair.label: run.pair for run in runs},
        feeds,
        fp32_onnx,
        getattr(reference, "model", None),
        reference=ref,
        thresholds=thresholds,
        classes=classes,
        threads=threads,
        say=say,
    )
    report = ParityReport(
        feeds=FeedSummary(
            feeds.kind,
            feeds.description,
            len(feeds),
            feeds.fingerprint,
            feeds.skipped,
            tuple(feeds.warnings)
            + tuple(few_images_warning(len(feeds)))
            + tuple(class_count_warning(feeds, ref.shape[1])),
            feeds.labels is not None,
            feeds.names,
        ),
        reference=Reference(reference.backend, reference.label, ref_device, ref_top1, ref_top5),
        results=tuple(results + list(skipped or [])),
        machine=versions() | describe(),
        head=head,
    )
    return report, errors


def reference_logits(workdir: WorkDir, feeds: FeedSet) -> Any:
    """PyTorch FP32 on the CPU, on the crops the clients send (as parity runs its reference)."""
    from rn50.runtimes.torch_runner import TorchRunner
    from rn50.weights import workdir_model

    with TorchRunner(workdir_model(workdir), device="cpu") as ref:
        return run_batches(ref, feeds, REFERENCE_BATCH)
