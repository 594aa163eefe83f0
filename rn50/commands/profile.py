"""``rn50 profile``: latency and throughput of every runtime × precision × batch (the engine is
``rn50.evaluation.measurement``); profile.json/.md/.png."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rn50.evaluation.measurement import run_profile
from rn50.evaluation.targets import profile_targets
from rn50.reports import profile_report
from rn50.results.profile_results import PRECISIONS, Settings
from rn50.runtimes.registry import check_names, runtime_names

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from rn50.artifacts import WorkDir
    from rn50.results.profile_results import ProfileReport, Row
    from rn50.runtimes.registry import Target



@dataclass(frozen=True)
class ProfileOptions:
    """``rn50 profile``: what to measure (filters) and how (settings)."""

    settings: Settings = field(default_factory=Settings)
    runtimes: list[str] | None = None
    precisions: list[str] | None = None
    artifacts: list[str] | None = None

    def check(self) -> None:
        self.settings.validate()
        check_names("runtime", self.runtimes, runtime_names())
        check_names("precision", self.precisions, PRECISIONS)


@dataclass(frozen=True)
class ProfileOutcome:
    report: ProfileReport
    written: list[Path]


def profile(options: ProfileOptions, workdir: WorkDir, *, planned: tuple[list[Target], list[Row]] | None = None,
            model_loader: Callable[[], Any] | None = None, progress: Callable[[str], None] | None = None) -> ProfileOutcome:  # fmt: skip
    """The command: plan (unless ``planned``), measure, write profile.json/.md/.png."""
    from rn50.weights import workdir_model

    options.check()
    targets, skipped = planned or profile_targets(workdir, options.settings, runtimes=options.runtimes, precisions=options.precisions,
                                       artifacts=options.artifacts)  # fmt: skip
    report = run_profile(targets, options.settings, skipped=skipped, progress=progress,
                         model_loader=model_loader or (lambda: workdir_model(workdir)))  # fmt: skip
    return ProfileOutcome(report, profile_report.write(report, workdir.root))
