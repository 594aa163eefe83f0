"""How profile measures: latency and throughput of every runtime × precision × batch, on the same inputs, with the same
warm-up, phases and statistics for each, and the machine recorded.

CPU runtimes are timed by the host clock around a full ``infer`` call. GPU runtimes are timed three ways, named as
trtexec names them: *Latency* (end to end from host memory: H2D + compute + D2H, host clock), *GPU Compute Time*
(inputs and outputs already on the device, CUDA events), the same with CUDA graphs, and the H2D / D2H copies alone
(CUDA events).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from rn50.artifacts import versions
from rn50.errors import CheckFailed, EnvironmentProblem
from rn50.machine import describe
from rn50.results.profile_results import DEVICE, GRAPH, HOST, ProfileReport, Row, Settings
from rn50.runtimes.registry import Pair, is_gpu, make_runner
from rn50.runtimes.timing import collect, summarize, wall_clock

if TYPE_CHECKING:
    from collections.abc import Callable


def inputs(batch: int, pool: np.ndarray) -> dict[str, np.ndarray]:
    """The same images for every runtime: sample crops, repeated to fill the batch."""
    reps = -(-batch // len(pool))
    return {"input": np.ascontiguousarray(np.concatenate([pool] * reps)[:batch])}


def profile_target(
    pair: Pair,
    settings: Settings,
    pool: np.ndarray,
    model_loader: Callable[[], Any],
    progress: Callable[[str], None],
) -> list[Row]:
    timed = functools.partial(
        collect,
        warmup_s=settings.warmup_s,
        warmup_min=settings.warmup_iterations,
        duration_s=settings.duration_s,
        iterations=settings.iterations,
    )
    base = (pair.runtime, pair.artifact, pair.precision)
    rows: list[Row] = []
    try:
        with make_runner(pair, threads=settings.threads, model=model_loader) as runner:  # threads: the runner's
            device = runner.device
            for batch in settings.batches:
                feed = inputs(batch, pool)
                progress(f"{pair.label} · batch {batch}")
                out = runner.infer(feed)  # also checks the feed against the model's inputs
                stats = summarize(timed(wall_clock(functools.partial(runner.infer, feed))), batch=batch)
                rows.append(Row(*base, "ok", batch, HOST, device, stats, sha256=pair.sha256))
                if not is_gpu(pair.runtime):
                    continue
                modes = [(DEVICE, False)] + ([(GRAPH, True)] if settings.cuda_graphs else [])
                copies: tuple[float, float] | None = None  # the same for every mode of this batch
                for mode, graph in modes:
                    try:
                        bench = runner.device_bench(feed, cuda_graph=graph)
                    except EnvironmentProblem as e:
                        rows.append(Row(*base, "skipped", batch, mode, device, reason=e.message, sha256=pair.sha256))
                        continue
                    if bench is None:
                        continue
                    copies = copies or bench.memory.copy_times(feed, sum(a.nbytes for a in out.values()), bench.stream)
                    h2d, d2h = copies
                    timer = bench.memory.timer(bench.stream, bench.enqueue)
                    stats = summarize(timed(timer), batch=batch)
                    rows.append(Row(*base, "ok", batch, mode, device, stats, h2d, d2h, sha256=pair.sha256))
    except EnvironmentProblem as e:
        return rows + [Row(*base, "skipped", reason=e.message, sha256=pair.sha256)]
    except CheckFailed as e:
        return rows + [Row(*base, "error", reason=e.message, sha256=pair.sha256)]
    return rows


def run_profile(
    pairs: list[Pair],
    settings: Settings,
    *,
    skipped: list[Row] | None = None,
    model_loader: Callable[[], Any],
    progress: Callable[[str], None] | None = None,
) -> ProfileReport:
    from rn50.samples import sample_crops

    say = progress or (lambda _m: None)
    pool = sample_crops(min(max(settings.batches), 16), split="evaluation")
    rows: list[Row] = []
    for pair in pairs:
        rows += profile_target(pair, settings, pool, model_loader, say)
    machine = versions() | describe() | {"threads": settings.threads}
    return ProfileReport(settings, machine, tuple(rows + list(skipped or [])))
