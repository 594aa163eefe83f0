"""``rn50 profile``: latency and throughput for every runtime × precision × batch, on the same inputs,
with the same warm-up, phases and statistics for each, and the machine recorded.

CPU runtimes are timed by the host clock around a full ``infer`` call. GPU runtimes are timed three ways,
named as trtexec names them: *Latency* (end to end from host memory: H2D + compute + D2H, host clock),
*GPU Compute Time* (inputs and outputs already on the device, CUDA events), the same with CUDA graphs,
and the H2D / D2H copies alone (CUDA events).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rn50.artifacts import WorkDir, versions
from rn50.errors import CheckFailed, EnvironmentProblem, UsageError
from rn50.machine import check_threads, describe, usable_cores
from rn50.metrics import DEFAULT_THRESHOLDS
from rn50.runtimes.registry import (
    ENGINE_RUNTIMES,
    GPU_RUNTIMES,
    PROFILE_RUNTIMES,
    TORCH_ARTIFACT,
    TORCH_RUNTIMES,
    Target,
    check_names,
    label,
    make_runner,
    reads,
    unavailable_reason,
)
from rn50.runtimes.timing import LatencyStats, collect, summarize, wall_clock

if TYPE_CHECKING:
    from collections.abc import Callable


log = logging.getLogger(__name__)

PRECISIONS = tuple(DEFAULT_THRESHOLDS)  # what results are judged as (bf16: OpenVINO's bf16 on the FP32 model)
# Modes, with trtexec's names for what each measures.
Mode = Literal["host", "device", "device+cuda-graph"]
HOST: Mode = "host"
DEVICE: Mode = "device"
GRAPH: Mode = "device+cuda-graph"
METRIC_NAME: dict[str, str] = {HOST: "Latency", DEVICE: "GPU Compute Time", GRAPH: "GPU Compute Time (CUDA graph)"}
RowStatus = Literal["ok", "skipped", "error"]


DURATION_S = 3.0


@dataclass(frozen=True)
class Settings:
    batches: tuple[int, ...] = (1, 8)
    warmup_s: float = 1.0
    warmup_iterations: int = 3
    duration_s: float | None = DURATION_S
    iterations: int | None = None
    threads: int = field(default_factory=usable_cores)
    cuda_graphs: bool = True

    @property
    def phase(self) -> str:
        """The measured phase of every row, as reports word it: an exact count or a duration."""
        return f"{self.iterations} iterations" if self.iterations else f"{self.duration_s} s"

    def validate(self) -> None:
        from rn50.runtimes.timing import check_budget

        if not self.batches or any(b < 1 for b in self.batches):
            raise UsageError(f"--batch {','.join(map(str, self.batches))}: batch sizes must be >= 1", fix="pass e.g. --batch 1,8,32")
        check_threads(self.threads)
        if self.warmup_iterations < 0:
            raise UsageError(f"--warmup-iterations {self.warmup_iterations} is negative", fix="pass 0 or more")
        check_budget(warmup_s=self.warmup_s, duration_s=self.duration_s, iterations=self.iterations)


def parse_batches(values: list[str] | None) -> tuple[int, ...]:
    """Batch sizes from --batch values (each already split at commas); None gives the default."""
    if not values:
        return Settings.batches
    try:
        batches = tuple(int(b) for b in values)
    except ValueError:
        raise UsageError(f"--batch {','.join(values)!r} is not a list of integers", fix="pass e.g. --batch 1,8,32") from None
    return tuple(dict.fromkeys(batches))  # sizes are checked by Settings.validate


@dataclass(frozen=True)
class Row:
    runtime: str
    artifact: str
    precision: str
    status: RowStatus
    batch: int | None = None
    mode: Mode = HOST
    device: str | None = None
    stats: LatencyStats | None = None
    h2d_ms: float | None = None  # median H2D copy of the batch (GPU runtimes, device modes)
    d2h_ms: float | None = None
    reason: str | None = None
    sha256: str | None = None  # of the file measured (checked against the manifest first)

    @property
    def label(self) -> str:
        return label(self.runtime, self.artifact)

    @property
    def metric(self) -> str:
        return METRIC_NAME[self.mode]


@dataclass(frozen=True)
class ProfileReport:
    settings: Settings
    machine: dict[str, Any]
    rows: tuple[Row, ...]
    created: float = field(default_factory=time.time)

    @property
    def measured(self) -> list[Row]:
        return [r for r in self.rows if r.stats is not None]

    @property
    def unstable(self) -> list[Row]:
        return [r for r in self.measured if r.stats is not None and r.stats.unstable]


def engine_batch_range(engine: Path) -> tuple[int, int]:
    """The batch sizes an engine's optimisation profile accepts, from its sidecar (no TensorRT needed)."""
    from rn50.runtimes.trt_plan import Sidecar, sidecar_path

    profile = Sidecar.load(sidecar_path(engine)).profiles[0]
    return int(profile["input_min"][0]), int(profile["input_max"][0])


def plan(workdir: WorkDir, settings: Settings, *, runtimes: list[str] | None = None, precisions: list[str] | None = None,
         artifacts: list[str] | None = None) -> tuple[list[Target], list[Row]]:  # fmt: skip
    """Targets to measure and rows for those skipped, with the reason (never silently dropped, never zero).
    The names and settings were checked by ``ProfileOptions.check``."""
    from rn50.commands.parity import plan as parity_plan

    wanted = runtimes or list(PROFILE_RUNTIMES)
    targets: list[Target] = []
    skipped: list[Row] = []
    if not artifacts or TORCH_ARTIFACT in artifacts:
        for runtime in (r for r in wanted if r in TORCH_RUNTIMES):
            if precisions and "fp32" not in precisions:
                continue
            reason = unavailable_reason(runtime)
            if reason:
                skipped.append(Row(runtime, TORCH_ARTIFACT, "fp32", "skipped", reason=reason))
            else:
                targets.append(Target(runtime, "fp32", TORCH_ARTIFACT, None))
    file_runtimes = [r for r in wanted if reads(r)]
    file_artifacts = [a for a in artifacts or [] if a != TORCH_ARTIFACT] or None
    if file_runtimes and (file_artifacts or not artifacts):
        found, not_here = parity_plan(workdir, runtimes=file_runtimes, artifacts=file_artifacts)
        for t in found:
            if not precisions or t.precision in precisions:
                targets.append(t)
        for s in not_here:
            if not precisions or s.precision in precisions:
                skipped.append(Row(s.runtime, s.artifact, s.precision, "skipped", reason=s.reason, sha256=s.sha256))
        # Batch sizes are checked against every engine's profile, runnable here or not: bad input is bad anywhere.
        engines = {Path(p) for p in [*(t.path for t in found if t.runtime in ENGINE_RUNTIMES),
                                     *(Path(s.path) for s in not_here if s.runtime in ENGINE_RUNTIMES)]}  # fmt: skip
        for engine in sorted(engines):
            lo, hi = engine_batch_range(engine)
            outside = [b for b in settings.batches if not lo <= b <= hi]
            if outside:
                raise UsageError(f"--batch {','.join(map(str, outside))} is outside {engine.name}'s profile (batch {lo}..{hi})",
                                 fix=f"profile batches within {lo}..{hi}, or rebuild with rn50 build-trt --min-batch/--max-batch")  # fmt: skip
    if not targets and not skipped:
        raise UsageError("nothing to profile with these --runtime/--precision/--artifact choices",
                         fix="drop a filter, or run rn50 export / quantize first")  # fmt: skip
    return targets, skipped


def inputs(batch: int, pool: np.ndarray) -> dict[str, np.ndarray]:
    """The same images for every runtime: sample crops, repeated to fill the batch."""
    reps = -(-batch // len(pool))
    return {"input": np.ascontiguousarray(np.concatenate([pool] * reps)[:batch])}


class _TorchThreads:
    """PyTorch on the CPU gets the same thread count as ONNX Runtime, restored afterwards."""

    def __init__(self, threads: int | None):
        self.threads, self.before = threads, 0

    def __enter__(self) -> None:
        if self.threads:
            import torch

            self.before = torch.get_num_threads()
            torch.set_num_threads(self.threads)

    def __exit__(self, *exc: object) -> None:
        if self.threads:
            import torch

            torch.set_num_threads(self.before)


def profile_target(target: Target, settings: Settings, pool: np.ndarray, model_loader: Callable[[], Any],
                   progress: Callable[[str], None]) -> list[Row]:  # fmt: skip
    phases = {"warmup_s": settings.warmup_s, "warmup_min": settings.warmup_iterations,
              "duration_s": settings.duration_s, "iterations": settings.iterations}  # fmt: skip
    base = (target.runtime, target.artifact, target.precision)
    rows: list[Row] = []
    torch_threads = _TorchThreads(settings.threads if target.runtime == "torch-cpu" else None)
    try:
        with torch_threads, make_runner(target, threads=settings.threads, model=model_loader) as runner:
            device = runner.device
            for batch in settings.batches:
                feed = inputs(batch, pool)
                progress(f"{target.label} · batch {batch}")
                out = runner.infer(feed)  # also checks the feed against the model's inputs
                stats = summarize(collect(wall_clock(lambda f=feed: runner.infer(f)), **phases), batch=batch)  # type: ignore[arg-type]
                rows.append(Row(*base, "ok", batch, HOST, device, stats, sha256=target.sha256))
                if target.runtime not in GPU_RUNTIMES:
                    continue
                modes = [(DEVICE, False)] + ([(GRAPH, True)] if settings.cuda_graphs else [])
                copies: tuple[float, float] | None = None  # the same for every mode of this batch
                for mode, graph in modes:
                    try:
                        bench = runner.device_bench(feed, cuda_graph=graph)
                    except EnvironmentProblem as e:
                        rows.append(Row(*base, "skipped", batch, mode, device, reason=e.message, sha256=target.sha256))
                        continue
                    if bench is None:
                        continue
                    copies = copies or bench.memory.copy_times(feed, sum(a.nbytes for a in out.values()), bench.stream)
                    h2d, d2h = copies
                    timer = bench.memory.timer(bench.stream, bench.enqueue)
                    stats = summarize(collect(timer, **phases), batch=batch)  # type: ignore[arg-type]
                    rows.append(Row(*base, "ok", batch, mode, device, stats, h2d, d2h, sha256=target.sha256))
    except EnvironmentProblem as e:
        return rows + [Row(*base, "skipped", reason=e.message, sha256=target.sha256)]
    except CheckFailed as e:
        return rows + [Row(*base, "error", reason=e.message, sha256=target.sha256)]
    return rows


def run_profile(targets: list[Target], settings: Settings, *, skipped: list[Row] | None = None,
                model_loader: Callable[[], Any], progress: Callable[[str], None] | None = None) -> ProfileReport:  # fmt: skip
    from rn50.samples import sample_crops

    say = progress or (lambda _m: None)
    pool = sample_crops(min(max(settings.batches), 16), split="evaluation")
    rows: list[Row] = []
    for target in targets:
        rows += profile_target(target, settings, pool, model_loader, say)
    machine = versions() | describe() | {"threads": settings.threads}
    return ProfileReport(settings, machine, tuple(rows + list(skipped or [])))


@dataclass(frozen=True)
class ProfileOptions:
    """``rn50 profile``: what to measure (filters) and how (settings)."""

    settings: Settings = field(default_factory=Settings)
    runtimes: list[str] | None = None
    precisions: list[str] | None = None
    artifacts: list[str] | None = None

    def check(self) -> None:
        self.settings.validate()
        check_names("runtime", self.runtimes, PROFILE_RUNTIMES)
        check_names("precision", self.precisions, PRECISIONS)


@dataclass(frozen=True)
class ProfileOutcome:
    report: ProfileReport
    written: list[Path]


def profile(options: ProfileOptions, workdir: WorkDir, *, planned: tuple[list[Target], list[Row]] | None = None,
            model_loader: Callable[[], Any] | None = None, progress: Callable[[str], None] | None = None) -> ProfileOutcome:  # fmt: skip
    """The command: plan (unless ``planned``), measure, write profile.json/.md/.png."""
    from rn50.reports import profile as profile_report
    from rn50.weights import workdir_model

    options.check()
    targets, skipped = planned or plan(workdir, options.settings, runtimes=options.runtimes, precisions=options.precisions,
                                       artifacts=options.artifacts)  # fmt: skip
    report = run_profile(targets, options.settings, skipped=skipped, progress=progress,
                         model_loader=model_loader or (lambda: workdir_model(workdir)))  # fmt: skip
    return ProfileOutcome(report, profile_report.write(report, workdir.root))
