"""``rn50 tune``: the serving configuration (instances, max batch, batching delay, threads per instance) with the
most images per second whose p99 latency keeps a budget, found by measuring each one on a real Triton server, with
every answer checked against PyTorch.

The search is a hill climb (Triton Model Analyzer's quick search is one too): it measures the default configuration,
then every configuration one step away along one dimension (instances 1·2·4, max batch 1·2·4·8·16·32, delay
0·1000·5000·20000 µs; threads per instance = the usable cores shared by the instances), moves to the best of them
while it beats the current one, and stops at a local maximum, at ``--max-points``, or before a point would run past
``--max-minutes``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from rn50.commands.flags import flag
from rn50.commands.loadtest import LOADTEST_COUNT
from rn50.commands.options import FeedOptions, ThresholdOptions, model_name_flag
from rn50.commands.outcome import QUIET, ReportOutcome, Ui
from rn50.commands.serve import DEFAULT_ARTIFACT, ServeOptions, served_artifact, served_copy, write_repository
from rn50.errors import INTERRUPT, CheckFailed, EnvironmentProblem, Interrupted, UsageError
from rn50.machine import usable_cores
from rn50.results.tune_results import GAIN, Config, Point, TuneReport
from rn50.serving.server import Endpoints, running, scratch_folder
from rn50.serving.triton_config import DEFAULT_MAX_BATCH, DEFAULT_QUEUE_DELAY_US, Batching

if TYPE_CHECKING:
    import numpy as np

    from rn50.artifacts import WorkDir
    from rn50.metrics import Thresholds
    from rn50.reports.render import Section

log = logging.getLogger(__name__)

INSTANCES = (1, 2, 4)
MAX_BATCHES = (1, 2, 4, 8, 16, 32)
DELAYS_US = (0, 1000, 5000, 20000)
WARMUP_PER_CLIENT = 2  # requests per client before a point is measured (the first runs allocate and fuse)
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class TuneOptions:
    artifact: str = flag("--artifact", default=DEFAULT_ARTIFACT, help="Artifact of the manifest to tune serving for.")
    runtime: str | None = flag("--runtime", default=None, help="Runtime that runs it (default as rn50 serve's).")
    model: str = model_name_flag()
    endpoints: Endpoints = field(default_factory=Endpoints)
    budget_ms: float = flag(
        "--latency-budget-ms", default=200.0, help="p99 latency (ms) a configuration must keep at --concurrency."
    )
    concurrency: int = flag("--concurrency", default=8, help="Concurrent clients each configuration is measured at.")
    requests: int = flag("--requests", default=200, help="Requests measured per configuration, after a warm-up.")
    max_minutes: float = flag(
        "--max-minutes",
        default=10.0,
        help="Stop before a configuration would run past this. The first configuration (rn50 serve's) is always "
        "measured, however long it takes: tune says so when it alone ran past the limit.",
    )
    max_points: int | None = flag("--max-points", default=None, help="Stop after this many configurations.")
    feeds: FeedOptions = field(default_factory=lambda: FeedOptions(count=LOADTEST_COUNT))
    thresholds: ThresholdOptions = ThresholdOptions.flag()

    def check(self) -> None:
        for name, value in (("--concurrency", self.concurrency), ("--requests", self.requests)):
            if value < 1:
                raise UsageError(f"{name} {value} must be >= 1", fix=f"pass {name} 1 or more")
        if self.budget_ms <= 0:
            raise UsageError(f"--latency-budget-ms {self.budget_ms} must be > 0", fix="pass e.g. 200")
        if self.max_minutes <= 0:
            raise UsageError(f"--max-minutes {self.max_minutes} must be > 0", fix="pass e.g. 5")
        if self.max_points is not None and self.max_points < 1:
            raise UsageError(f"--max-points {self.max_points} must be >= 1", fix="pass 1 or more, or leave it out")
        self.feeds.check()
        self.serve_options(default_config()).check()  # the runtime known, Triton installed, the ports free

    def serve_options(self, config: Config) -> ServeOptions:
        batching = Batching(config.max_batch, config.queue_delay_us, config.instances)
        return ServeOptions(self.artifact, self.runtime, self.model, self.endpoints, batching, config.threads)


def default_config() -> Config:
    """rn50 serve's configuration: one instance on every usable core, its max batch and delay."""
    return Config(1, DEFAULT_MAX_BATCH, DEFAULT_QUEUE_DELAY_US, usable_cores())


def neighbours(c: Config, cores: int) -> list[Config]:
    """The configurations one step from ``c`` along one dimension; threads follow the instance count."""
    out = []
    for dim, values in (("instances", INSTANCES), ("max_batch", MAX_BATCHES), ("queue_delay_us", DELAYS_US)):
        here = getattr(c, dim)
        lower = [v for v in values if v < here][-1:]
        higher = [v for v in values if v > here][:1]
        for v in lower + higher:
            n = replace(c, **{dim: v})
            out.append(replace(n, threads=max(1, cores // n.instances)))
    return out


def _rank(p: Point) -> tuple[int, float]:
    """Eligible points by throughput above every other; among correct ones over budget, the lower p99."""
    if p.status == "ok":
        return (2, p.throughput)
    if p.status == "over budget" and p.p99_ms is not None:
        return (1, -p.p99_ms)
    return (0, 0.0)


@dataclass(frozen=True)
class TuneOutcome(ReportOutcome[TuneReport]):
    error: CheckFailed | Interrupted | None = None

    def report_sections(self) -> list[Section]:
        from rn50.reports import tune_report

        return tune_report.sections(self.report)

    def to_dict(self) -> dict[str, Any]:
        from rn50.results.tune_results import to_dict

        return to_dict(self.report)


def tune(options: TuneOptions, workdir: WorkDir, ui: Ui = QUIET) -> TuneOutcome:
    """The serving configuration with the most images per second within a p99 latency budget, measured on a real
    Triton server with every answer checked."""
    from rn50.artifacts import versions
    from rn50.evaluation.comparison import reference_logits
    from rn50.machine import describe
    from rn50.reports import tune_report

    start = time.monotonic()
    served, kind = served_artifact(options.serve_options(default_config()), workdir)
    limits = options.thresholds.limits(served.precision)
    ui.status("reference")
    feeds = options.feeds.read(status=ui.status)
    images, reference = feeds.array(), reference_logits(workdir, feeds)
    cores, budget_s = usable_cores(), options.max_minutes * 60
    points: dict[Config, Point] = {}
    stopped = ""

    def measure(config: Config) -> Point | None:
        """The point, or None when the time or point limit says stop first."""
        nonlocal stopped
        if config in points:
            return points[config]
        spent = time.monotonic() - start
        each = max((p.seconds for p in points.values()), default=0.0)
        if options.max_points is not None and len(points) >= options.max_points:
            stopped = stopped or f"--max-points {options.max_points} reached"
            return None
        if points and spent + each > budget_s:
            first = (
                f"; the first point alone took {each:.0f} s, past it (it is always measured)"
                if spent > budget_s
                else ""
            )
            stopped = stopped or f"--max-minutes {options.max_minutes:g}: another point would run past it{first}"
            return None
        ui.status(f"point {len(points) + 1}: {config.describe()}")
        point = measure_point(options, served, kind, config, images, reference, limits)
        points[config] = point
        log.info("%s: %s, %.1f img/s, p99 %s ms", config.describe(), point.status, point.throughput, point.p99_ms)
        return point

    interrupted = False
    try:
        current = measure(default_config())
        while current is not None and not stopped:
            tried = [p for p in (measure(n) for n in neighbours(current.config, cores)) if p is not None]
            better = max(tried, key=_rank, default=None)
            if (
                better is None
                or _rank(better) <= _rank(current)
                or (better.status == current.status == "ok" and better.throughput < current.throughput * GAIN)
            ):
                stopped = stopped or "no configuration one step away does better (a local maximum)"
                break
            current = better
    except KeyboardInterrupt:  # Ctrl-C: the points measured so far are kept and reported
        INTERRUPT.clear()
        interrupted, stopped = True, "interrupted (Ctrl-C or SIGTERM)"
    report = TuneReport(
        served.artifact,
        served.runtime,
        served.precision,
        served.sha256,
        options.concurrency,
        options.requests,
        options.budget_ms,
        default_config(),
        tuple(points.values()),
        stopped,
        versions() | describe(),
        time.monotonic() - start,
    )
    written = tune_report.write(report, workdir.root)
    error: CheckFailed | Interrupted | None = None
    if interrupted:
        error = Interrupted(
            f"interrupted after {len(points)} point(s)", fix="they are in tune.json; run again for more"
        )
    elif report.best is None:
        error = CheckFailed(report.verdict_line(), fix="raise --latency-budget-ms, or lower --concurrency")
    return TuneOutcome(report, written, error)


def measure_point(
    options: TuneOptions,
    served: Any,
    kind: str,
    config: Config,
    images: np.ndarray,
    reference: np.ndarray,
    limits: Thresholds,
) -> Point:
    """One configuration on a freshly started Triton server: a warm-up, then ``options.requests`` requests from
    ``options.concurrency`` clients, every answer judged against the reference."""
    from rn50.serving.clients import measure, run_level

    t0 = time.monotonic()
    url, name = options.endpoints.http_url, options.model
    try:
        with scratch_folder() as scratch:
            copy = served_copy(served, scratch / "served")
            write_repository(options.serve_options(config), copy, kind, scratch / "models")
            with running(scratch / "models", options.endpoints, log_file=scratch / "triton.log"):
                warm = WARMUP_PER_CLIENT * options.concurrency
                run_level(
                    url, "http", name, options.concurrency, images, duration_s=None, requests=warm, timeout_s=TIMEOUT_S
                )
                level, pairs = measure(
                    url,
                    "http",
                    name,
                    options.concurrency,
                    images,
                    reference,
                    limits,
                    duration_s=None,
                    requests=options.requests,
                    timeout_s=TIMEOUT_S,
                )
    except (CheckFailed, UsageError, EnvironmentProblem) as e:
        return Point(config, "failed", seconds=time.monotonic() - t0, reason=e.message)
    stats = level.latency
    status, reason = "ok", ""
    if level.server_lost is not None or level.errors:
        status = "failed"
        reason = level.server_lost or (level.error_examples[0] if level.error_examples else "failed requests")
    elif level.wrong:
        status, reason = "wrong answers", level.wrong_examples[0] if level.wrong_examples else ""
    elif stats is None or stats.p99_ms > options.budget_ms:
        status, reason = "over budget", f"p99 above {options.budget_ms:g} ms"
    return Point(
        config,
        status,  # type: ignore[arg-type]
        level.throughput,
        stats.median_ms if stats else None,
        stats.p90_ms if stats else None,
        stats.p99_ms if stats else None,
        level.formed_batch,
        level.requests,
        len(pairs),
        level.wrong,
        level.errors,
        time.monotonic() - t0,
        reason,
    )
