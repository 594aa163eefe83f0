"""``rn50 profile``: latency and throughput of every runtime × precision × batch (measured by
``rn50.evaluation.measurement``); profile.json/.md/.png."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rn50.commands.flags import flag
from rn50.commands.options import artifacts_flag
from rn50.commands.outcome import QUIET, ReportOutcome, Ui
from rn50.evaluation.measurement import run_profile
from rn50.evaluation.pairs import profile_pairs
from rn50.reports import profile_report
from rn50.results import parity_results, profile_results
from rn50.results.profile_results import (
    PRECISIONS,
    ProfileReport,
    Settings,
)
from rn50.runtimes.registry import TORCH_ARTIFACT, check_names, describe_runtimes, runtime_names

if TYPE_CHECKING:
    from collections.abc import Callable

    from rn50.artifacts import WorkDir
    from rn50.errors import Rn50Error
    from rn50.reports.render import Section
    from rn50.results.profile_results import Row
    from rn50.runtimes.registry import Pair


@dataclass(frozen=True)
class ProfileOptions:
    """``rn50 profile``: what to measure (filters) and how (settings)."""

    settings: Settings = field(default_factory=Settings)
    runtimes: list[str] | None = flag(
        "--runtime",
        default=None,
        cli_type=list[str] | None,
        help=lambda: f"Runtime(s) to measure (default: every one available here): {describe_runtimes()}.",
    )
    precisions: list[str] | None = flag(
        "--precision",
        default=None,
        cli_type=list[str] | None,
        help=f"Precision(s) to measure: {', '.join(PRECISIONS)}.",
    )
    artifacts: list[str] | None = artifacts_flag(
        f"Artifact(s) to measure ({TORCH_ARTIFACT}: the PyTorch model; default: all)."
    )

    def check(self) -> None:
        self.settings.validate()
        check_names("runtime", self.runtimes, runtime_names())
        check_names("precision", self.precisions, PRECISIONS)


@dataclass(frozen=True)
class ProfileOutcome(ReportOutcome[ProfileReport]):
    verdicts: dict[Any, Any] = field(default_factory=dict)
    error: Rn50Error | None = None

    def report_sections(self) -> list[Section]:
        return profile_report.sections(self.report, self.verdicts, full=False)

    def to_dict(self) -> dict[str, Any]:
        return profile_results.to_dict(self.report)


def profile(
    options: ProfileOptions,
    workdir: WorkDir,
    ui: Ui = QUIET,
    *,
    planned: tuple[list[Pair], list[Row]] | None = None,
    model_loader: Callable[[], Any] | None = None,
) -> ProfileOutcome:
    """Latency and throughput of every runtime × precision × batch, on the same inputs (trtexec's names)."""
    from rn50.weights import workdir_model

    pairs, skipped = planned or profile_pairs(
        workdir, options.settings, runtimes=options.runtimes, precisions=options.precisions, artifacts=options.artifacts
    )
    report = run_profile(
        pairs,
        options.settings,
        skipped=skipped,
        progress=lambda m: ui.status(f"profile: {m}"),
        model_loader=model_loader or (lambda: workdir_model(workdir)),
    )
    verdicts = profile_report.parity_verdicts(workdir.path(parity_results.REPORT))
    return ProfileOutcome(report, profile_report.write(report, workdir.root), verdicts)
