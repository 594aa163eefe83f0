"""``rn50 loadtest``: concurrent single-image clients against a model on a Triton server; every answer is
checked against the PyTorch reference, and one wrong answer (or failed request) fails the run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rn50.commands.flags import flag
from rn50.commands.options import FeedOptions, ThresholdOptions, model_name_flag
from rn50.commands.outcome import QUIET, ReportOutcome, Ui
from rn50.errors import CheckFailed, UsageError
from rn50.metrics import DEFAULT_THRESHOLDS
from rn50.results import loadtest_results
from rn50.results.loadtest_results import LoadtestReport
from rn50.serving.clients import PROTOCOLS, connect, model_info, run, wait_ready
from rn50.serving.server import check_installed

if TYPE_CHECKING:
    from rn50.artifacts import WorkDir
    from rn50.reports.render import Section

DEFAULT_URL = "127.0.0.1:8000"
DEFAULT_LEVELS = (1, 4, 8)
DURATION_S = 10.0
TIMEOUT_S = 60.0
LOADTEST_COUNT = 32  # distinct held-apart crops the clients cycle through


@dataclass(frozen=True)
class LoadtestOptions:
    url: str = flag("--url", default=DEFAULT_URL, help="The server's HOST:PORT (HTTP, or gRPC with --protocol grpc).")
    model: str = model_name_flag()
    protocol: str = flag("--protocol", default="http", help=f"{' or '.join(PROTOCOLS)}.")
    concurrency: tuple[int, ...] = flag(
        "--concurrency",
        default=DEFAULT_LEVELS,
        parse=lambda v: parse_levels(v),
        cli_type=list[str] | None,
        help=f"Concurrent clients per level (default {','.join(map(str, DEFAULT_LEVELS))}).",
    )
    duration_s: float | None = flag("--duration", default=DURATION_S, help="Seconds measured per level.")
    requests: int | None = flag("--requests", default=None, help="Requests per level, instead of --duration.")
    timeout_s: float = flag(
        "--timeout", default=TIMEOUT_S, help="Seconds a request may take before it counts as failed."
    )
    wait_s: float = flag(
        "--wait", default=0.0, help="Seconds to wait for a server that is still starting (0: it must answer now)."
    )
    precision: str | None = flag(
        "--precision",
        default=None,
        help=f"Judge answers as {'/'.join(DEFAULT_THRESHOLDS)} (default: what the model's config says).",
    )
    feeds: FeedOptions = field(default_factory=lambda: FeedOptions(count=LOADTEST_COUNT))
    thresholds: ThresholdOptions = ThresholdOptions.flag()

    def check(self) -> None:
        check_installed()
        if self.protocol not in PROTOCOLS:
            raise UsageError(f"--protocol {self.protocol!r}", fix=f"use one of {', '.join(PROTOCOLS)}")
        if not self.concurrency or any(c < 1 for c in self.concurrency):
            raise UsageError(
                f"--concurrency {','.join(map(str, self.concurrency))}: each level must be >= 1",
                fix="pass e.g. --concurrency 1,4,8",
            )
        if self.requests is not None and self.requests < 1:
            raise UsageError(f"--requests {self.requests} must be >= 1", fix="pass e.g. --requests 2000")
        if self.requests is None and (self.duration_s is None or self.duration_s <= 0):
            raise UsageError(
                f"--duration {self.duration_s} must be > 0", fix="pass e.g. --duration 10, or --requests N"
            )
        if self.wait_s < 0:
            raise UsageError(
                f"--wait {self.wait_s} is negative", fix="pass seconds to wait for the server, e.g. --wait 120"
            )
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
        raise UsageError(
            f"--concurrency {','.join(values)!r} is not a list of integers", fix="pass e.g. --concurrency 1,4,8"
        ) from None


def failure(report: LoadtestReport) -> CheckFailed:
    return CheckFailed(report.verdict_line(), fix="see loadtest.md for the first wrong answers and errors")


@dataclass(frozen=True)
class LoadtestOutcome(ReportOutcome[LoadtestReport]):
    @property
    def error(self) -> CheckFailed | None:
        return None if self.report.passed else failure(self.report)

    def report_sections(self) -> list[Section]:
        from rn50.reports import loadtest_report

        return loadtest_report.sections(self.report)

    def to_dict(self) -> dict[str, Any]:
        return loadtest_results.to_dict(self.report)


def loadtest(options: LoadtestOptions, workdir: WorkDir, ui: Ui = QUIET) -> LoadtestOutcome:
    """Concurrent clients against a served model: throughput, latency percentiles, the batches Triton formed, every
    answer checked against PyTorch."""
    from rn50.artifacts import versions
    from rn50.evaluation.comparison import reference_logits
    from rn50.machine import describe
    from rn50.reports import loadtest_report

    say = ui.status
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
        raise UsageError(
            f"the served {info.artifact} (sha256 {info.sha256[:12]}) is not an artifact of {workdir.root}",
            fix="pass --out the work directory the served model came from",
        )
    precision = options.precision or info.precision
    if precision is None:
        raise UsageError(
            f"model {info.name!r} does not say which precision it runs (rn50 writes rn50_precision into its configs)",
            fix="pass --precision fp32|fp16|int8|bf16",
        )
    limits = options.thresholds.limits(precision)
    say("reference")
    feeds = options.feeds.read()
    reference = reference_logits(workdir, feeds)
    levels, overall = run(
        options.url,
        options.protocol,
        info.name,
        options.concurrency,
        feeds.array(),
        reference,
        limits,
        duration_s=options.duration_s,
        requests=options.requests,
        timeout_s=options.timeout_s,
        progress=say,
    )
    failures = tuple(limits.failures(overall)) if overall is not None else ()
    lost = next((level for level in levels if level.server_lost is not None), None)
    if lost is not None:
        failures += (
            f"the server stopped answering during the {lost.concurrency}-client level ({lost.server_lost}); "
            f"the {sum(level.requests for level in levels)} answers before that were checked",
        )
    report = LoadtestReport(
        options.url,
        options.protocol,
        info,
        precision,
        limits,
        options.phase,
        feeds.description,
        tuple(levels),
        overall,
        failures,
        versions() | describe(),
    )
    return LoadtestOutcome(report, loadtest_report.write(report, workdir.root))
