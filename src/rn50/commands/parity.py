"""``rn50 parity``: every runtime × precision artifact against the PyTorch FP32 reference, on the same feeds, and
every INT8 result against its own Q/DQ file (compared by ``rn50.evaluation.comparison``); parity.json/.md/.png."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rn50.commands.flags import flag
from rn50.commands.options import (
    PARITY_BATCH,
    FeedOptions,
    ThresholdOptions,
    artifacts_flag,
    check_batch,
    runtimes_flag,
    threads_flag,
)
from rn50.commands.outcome import QUIET, ReportOutcome, Ui
from rn50.errors import CheckFailed, UsageError
from rn50.evaluation.comparison import run_parity
from rn50.evaluation.pairs import parity_pairs
from rn50.exporter.onnx_file import FP32_NAME
from rn50.onnx_graph import load_header
from rn50.reports import parity_report
from rn50.results import parity_results
from rn50.results.parity_results import ParityReport
from rn50.runtimes.registry import check_names

if TYPE_CHECKING:
    from rn50.artifacts import WorkDir
    from rn50.feeds import FeedSet
    from rn50.reports.render import Section
    from rn50.results.parity_results import PairResult
    from rn50.runtimes.registry import Pair

log = logging.getLogger(__name__)
REFERENCE_DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class ParityOptions:
    """``rn50 parity``: the feeds, the pairs (filters and extra files), the thresholds and the reference."""

    feeds: FeedOptions = field(default_factory=FeedOptions)
    batch: int = flag("--batch", default=PARITY_BATCH, help="The batch size every runtime runs at.")
    runtimes: list[str] | None = runtimes_flag()
    artifacts: list[str] | None = artifacts_flag()
    onnx: list[Path] | None = flag(
        "--onnx", default=None, help="Extra ONNX file(s) to compare, e.g. another tool's Q/DQ model."
    )
    thresholds: ThresholdOptions = ThresholdOptions.flag()
    reference_device: str = flag(
        "--reference-device", default="cpu", help="Device of the PyTorch reference: cpu or cuda (TF32 off)."
    )
    threads: int = threads_flag()

    def check(self) -> None:
        from rn50.machine import check_threads

        check_names("runtime", self.runtimes)
        if self.reference_device not in REFERENCE_DEVICES:
            raise UsageError(
                f"--reference-device {self.reference_device!r}", fix=f"use {' or '.join(REFERENCE_DEVICES)}"
            )
        check_threads(self.threads)
        check_batch(self.batch)
        for path in self.onnx or []:
            if not Path(path).is_file():
                raise UsageError(f"ONNX file not found: {path}", fix="pass an existing file to --onnx")
            load_header(Path(path), fix="pass an ONNX model to --onnx")
        self.feeds.check()


@dataclass(frozen=True)
class ParityOutcome(ReportOutcome[ParityReport]):
    @property
    def error(self) -> CheckFailed | None:
        return None if self.report.passed else failure(self.report)

    def report_sections(self) -> list[Section]:
        return parity_report.sections(self.report)

    def to_dict(self) -> dict[str, Any]:
        return parity_results.to_dict(self.report)


def failure(report: ParityReport) -> CheckFailed:
    """The one error a failed parity run ends with (the CLI's and the pipeline's)."""
    first = report.failed[0]
    return CheckFailed(
        report.first_failure(), fix=first.fix or "see parity.md; INT8 per-layer errors are in quantize-report.md"
    )


def _fp32_onnx(workdir: WorkDir) -> Path | None:
    """The work directory's FP32 graph (the INT8 files' source), where it has one."""
    art = workdir.artifact(FP32_NAME)
    return workdir.path(art.path) if art is not None else None


def parity(
    options: ParityOptions,
    workdir: WorkDir,
    ui: Ui = QUIET,
    *,
    planned: tuple[list[Pair], list[PairResult]] | None = None,
    feeds: FeedSet | None = None,
    model: Any = None,
) -> ParityOutcome:
    """Every runtime × precision artifact against PyTorch FP32 on the same feeds, with a verdict; every INT8 result
    against its own Q/DQ file too."""
    from rn50.runtimes.torch_runner import TorchRunner
    from rn50.weights import workdir_model

    pairs, skipped = planned or parity_pairs(
        workdir, runtimes=options.runtimes, artifacts=options.artifacts, extra_onnx=options.onnx
    )
    feeds = feeds or options.feeds.read(status=ui.status)
    for warning in feeds.warnings:
        log.warning("%s", warning)
    reference = TorchRunner(
        model if model is not None else workdir_model(workdir), device=options.reference_device, threads=options.threads
    )
    report, errors = run_parity(
        reference,
        pairs,
        feeds,
        thresholds=options.thresholds.limits,
        batch=options.batch,
        skipped=skipped,
        strict_runtimes=bool(options.runtimes),
        threads=options.threads,
        progress=lambda m: ui.status(f"parity: {m}"),
        fp32_onnx=_fp32_onnx(workdir),
        head=workdir.head,
    )
    return ParityOutcome(report, parity_report.write(report, errors, workdir.root))
