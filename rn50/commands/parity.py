"""``rn50 parity``: every runtime × precision artifact against the PyTorch FP32 reference, on the same feeds, and
every INT8 result against its own Q/DQ file (the engine is ``rn50.evaluation.comparison``); parity.json/.md/.png."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rn50.commands.options import PARITY_BATCH, FeedOptions, ThresholdOptions, check_batch
from rn50.errors import CheckFailed, UsageError
from rn50.evaluation.comparison import run_parity
from rn50.evaluation.targets import parity_targets
from rn50.reports import parity_report
from rn50.runtimes.registry import check_names

if TYPE_CHECKING:
    from collections.abc import Callable

    from rn50.artifacts import WorkDir
    from rn50.feeds import FeedSet
    from rn50.results.parity_results import ParityReport, TargetResult
    from rn50.runtimes.registry import Target

REFERENCE_DEVICES = ("cpu", "cuda")


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
    from rn50.runtimes.torch_runner import TorchRunner
    from rn50.weights import workdir_model

    options.check()
    targets, skipped = planned or parity_targets(workdir, runtimes=options.runtimes, artifacts=options.artifacts, extra_onnx=options.onnx)
    feeds = feeds or options.feeds.read()
    reference = TorchRunner(model if model is not None else workdir_model(workdir), device=options.reference_device)
    report, errors = run_parity(reference, targets, feeds, thresholds=options.thresholds.limits, batch=options.batch,
                                skipped=skipped, strict_runtimes=bool(options.runtimes), threads=options.threads,
                                progress=progress)  # fmt: skip
    return ParityOutcome(report, parity_report.write(report, errors, workdir.root))
