"""Latency measurement and statistics, named as trtexec names them so users can compare."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rn50.errors import UsageError
from rn50.words import opt

if TYPE_CHECKING:
    from collections.abc import Callable

HIGH_CV = 0.05


@dataclass(frozen=True)
class LatencyStats:
    batch: int
    count: int
    min_ms: float
    mean_ms: float
    median_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    std_ms: float
    throughput: float  # images per second, from the median

    @property
    def cv(self) -> float:
        return self.std_ms / self.mean_ms if self.mean_ms > 0 else 0.0

    @property
    def unstable(self) -> bool:
        return self.cv > HIGH_CV


def summarize(samples_ms: list[float], *, batch: int) -> LatencyStats:
    if not samples_ms:
        raise ValueError("no latency samples")
    arr = np.asarray(samples_ms, dtype=np.float64)
    pct = np.asarray(np.percentile(arr, [90, 95, 99]))
    median = float(np.median(arr))
    return LatencyStats(
        batch=batch,
        count=len(arr),
        min_ms=float(arr.min()),
        mean_ms=float(arr.mean()),
        median_ms=median,
        p90_ms=float(pct[0]),
        p95_ms=float(pct[1]),
        p99_ms=float(pct[2]),
        max_ms=float(arr.max()),
        std_ms=statistics.pstdev(samples_ms) if len(arr) > 1 else 0.0,
        throughput=batch * 1000.0 / median if median > 0 else math.inf,
    )


def check_budget(*, warmup_s: float, duration_s: float | None, iterations: int | None) -> None:
    if warmup_s < 0:
        raise UsageError(f"{opt('warmup')} {warmup_s} is negative", fix="pass 0 or more seconds")
    if duration_s is not None and duration_s <= 0:
        raise UsageError(f"{opt('duration')} {duration_s} must be > 0", fix="pass a positive number of seconds, e.g. 5")
    if iterations is not None and iterations < 1:
        raise UsageError(f"{opt('iterations')} {iterations} must be >= 1", fix="pass a positive count")


def collect(
    one: Callable[[], float],
    *,
    warmup_s: float = 1.0,
    warmup_min: int = 3,
    duration_s: float | None = 3.0,
    iterations: int | None = None,
    min_iterations: int = 10,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Warm up (for ``warmup_s`` seconds and at least ``warmup_min`` calls), then collect ``one()``'s
    samples (ms each) for ``duration_s`` seconds (at least ``min_iterations``) or exactly ``iterations``.

    ``one`` runs one inference and returns how long it took, by whatever clock fits the device (wall
    clock on the CPU, CUDA events on a GPU); ``clock`` only paces the phases.
    """
    check_budget(warmup_s=warmup_s, duration_s=duration_s, iterations=iterations)
    if warmup_min < 0:
        raise UsageError(f"{opt('warmup_iterations')} {warmup_min} is negative", fix="pass 0 or more")
    start, n = clock(), 0
    while n < warmup_min or clock() - start < warmup_s:
        one()
        n += 1
    samples: list[float] = []
    begin = clock()
    while True:
        samples.append(one())
        if iterations is not None:
            if len(samples) >= iterations:
                break
        elif len(samples) >= min_iterations and clock() - begin >= (duration_s or 0):
            break
    return samples


def wall_clock(run: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> Callable[[], float]:
    """``run`` timed by the host clock, in ms; ``run`` must return only when its work is done."""

    def one() -> float:
        t0 = clock()
        run()
        return (clock() - t0) * 1000.0

    return one


def measure(
    run: Callable[[], object], *, clock: Callable[[], float] = time.perf_counter, **phases: float | int | None
) -> list[float]:
    """``collect`` with ``run`` timed by the host clock (CPU runtimes, or anything that synchronises)."""
    return collect(wall_clock(run, clock), clock=clock, **phases)  # type: ignore[arg-type]
