"""``rn50 loadtest``: concurrent single-image clients against a model on a Triton server; every answer is
checked against the PyTorch reference, and one wrong answer (or failed request) fails the run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rn50.commands.options import FeedOptions, ThresholdOptions
from rn50.errors import CheckFailed, UsageError
from rn50.metrics import DEFAULT_THRESHOLDS
from rn50.results.loadtest_results import LoadtestReport
from rn50.serving.clients import PROTOCOLS, connect, model_info, run, wait_ready
from rn50.serving.server import check_installed

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from rn50.artifacts import WorkDir

DEFAULT_URL = "127.0.0.1:8000"
DEFAULT_LEVELS = (1, 4, 8)
DURATION_S = 10.0
TIMEOUT_S = 60.0
LOADTEST_COUNT = 32  # distinct held-apart crops the clients cycle through


@dataclass(frozen=True)
class LoadtestOptions:
    url: str = DEFAULT_URL
    model: str = "resnet50"
    protocol: str = "http"
    concurrency: tuple[int, ...] = DEFAULT_LEVELS
    duration_s: float | None = DURATION_S
    requests: int | None = None  # per level, instead of a duration
    timeout_s: float = TIMEOUT_S
    wait_s: float = 0.0  # how long to wait for a server that is still starting
    precision: str | None = None  # what the answers are judged as, where the server's model does not say
    feeds: FeedOptions = field(default_factory=lambda: FeedOptions(count=LOADTEST_COUNT))
    thresholds: ThresholdOptions = field(default_factory=ThresholdOptions)

    def check(self) -> None:
        check_installed()
        if self.protocol not in PROTOCOLS:
            raise UsageError(f"--protocol {self.protocol!r}", fix=f"use one of {', '.join(PROTOCOLS)}")
        if not self.concurrency or any(c < 1 for c in self.concurrency):
            raise UsageError(f"--concurrency {','.join(map(str, self.concurrency))}: each level must be >= 1", fix="pass e.g. --concurrency 1,4,8")
        if self.requests is not None and self.requests < 1:
            raise UsageError(f"--requests {self.requests} must be >= 1", fix="pass e.g. --requests 2000")
        if self.requests is None and (self.duration_s is None or self.duration_s <= 0):
            raise UsageError(f"--duration {self.duration_s} must be > 0", fix="pass e.g. --duration 10, or --requests N")
        if self.wait_s < 0:
            raise UsageError(f"--wait {self.wait_s} is negative", fix="pass seconds to wait for the server, e.g. --wait 120")
        if self.timeout_s <= 0:
            raise UsageError(f"--timeout {self.timeout_s} must be > 0", fix="pass seconds, e.g. --timeout 60")
        if self.precision is not None and self.precision not in DEFAULT_THRESHOLDS:
            raise UsageError(f"--precision {self.precision!r}", fix=f"use one of {', '.join(DEFAULT_THRESHOLDS)}")
        self.feeds.check()

    @property
    def phase(self) -> str:
        return f"{self.requests} requests" if self.requests is not None else f"{self.duration_s} s"


def parse_levels(values: list[str] | None) -> tuple[int, ...]:
    if not values:
        return DEFAULT_LEVELS
    try:
        return tuple(dict.fromkeys(int(v) for v in values))
    except ValueError:
        raise UsageError(f"--concurrency {','.join(values)!r} is not a list of integers", fix="pass e.g. --concurrency 1,4,8") from None


def failure(report: LoadtestReport) -> CheckFailed:
    return CheckFailed(report.verdict_line(), fix="see loadtest.md for the first wrong answers and errors")


@dataclass(frozen=True)
class LoadtestOutcome:
    report: LoadtestReport
    written: list[Path]


def loadtest(options: LoadtestOptions, workdir: WorkDir, *, progress: Callable[[str], None] | None = None) -> LoadtestOutcome:
    from rn50.artifacts import versions
    from rn50.evaluation.comparison import reference_logits
    from rn50.machine import describe
    from rn50.reports import loadtest_report

    say = progress or (lambda _m: None)
    options.check()
    if options.wait_s:
        say("waiting for the server")
        wait_ready(options.url, options.protocol, options.model, options.wait_s)
    client = connect(options.url, options.protocol)
    try:
        info = model_info(client, options.model, options.protocol)
    finally:
        client.close()
    known = {a.sha256 for a in workdir.artifacts()}
    if info.sha256 and info.sha256 not in known:  # the reference must be the model the served file was made from
        raise UsageError(f"the served {info.artifact} (sha256 {info.sha256[:12]}) is not an artifact of {workdir.root}",
                         fix="pass --out the work directory the served model came from")  # fmt: skip
    precision = options.precision or info.precision
    if precision is None:
        raise UsageError(f"model {info.name!r} does not say which precision it runs (rn50 writes rn50_precision into its configs)",
                         fix="pass --precision fp32|fp16|int8|bf16")  # fmt: skip
    limits = options.thresholds.limits(precision)
    say("reference")
    feeds = options.feeds.read()
    reference = reference_logits(workdir, feeds)
    levels, overall = run(options.url, options.protocol, info.name, options.concurrency, feeds.images, reference, limits,
                 duration_s=options.duration_s, requests=options.requests, timeout_s=options.timeout_s, progress=say)  # fmt: skip
    failures = tuple(limits.failures(overall)) if overall is not None else ()
    report = LoadtestReport(options.url, options.protocol, info, precision, limits, options.phase, feeds.description, tuple(levels),
                            overall, failures, versions() | describe())  # fmt: skip
    return LoadtestOutcome(report, loadtest_report.write(report, workdir.root))

