"""What `rn50 tune` found (tune.json): every serving configuration it measured on a real Triton server, its speed
and latency at the asked concurrency, whether every answer was right, and which configuration to serve. Types and
their JSON form only."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from rn50.jsonio import jsonable, read_json
from rn50.words import cmd

if TYPE_CHECKING:
    from pathlib import Path

SCHEMA = "rn50.tune/1"
GAIN = 1.02  # what another configuration must beat by to be preferred (run-to-run noise is a few percent on 2 cores)
REPORT = "tune.json"

PointStatus = Literal["ok", "over budget", "wrong answers", "failed"]


@dataclass(frozen=True, order=True)
class Config:
    """One serving configuration: Triton's instance count, max_batch_size and batching delay, and the CPU threads
    each instance runs with."""

    instances: int
    max_batch: int
    queue_delay_us: int
    threads: int

    def describe(self) -> str:
        return (
            f"{self.instances} instance(s) × {self.threads} thread(s), max batch {self.max_batch}, "
            f"delay {self.queue_delay_us} µs"
        )


@dataclass(frozen=True)
class Point:
    """One configuration as measured: ``status`` ok when every answer was right, no request failed and the p99
    latency kept the budget."""

    config: Config
    status: PointStatus
    throughput: float = 0.0  # answered images per second of wall time
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    formed_batch: float | None = None  # mean images per Triton execution
    answered: int = 0
    checked: int = 0  # answers compared with PyTorch (every answer received)
    wrong: int = 0
    errors: int = 0
    seconds: float = 0.0  # the point's whole cost: server start, warm-up and measurement
    reason: str = ""  # why it failed or is not eligible


@dataclass(frozen=True)
class TuneReport:
    artifact: str
    runtime: str
    precision: str
    sha256: str
    concurrency: int
    requests: int
    budget_ms: float
    default: Config
    points: tuple[Point, ...]
    stopped: str  # why the search ended
    machine: dict[str, Any]
    seconds: float
    created: float = field(default_factory=time.time)

    @property
    def eligible(self) -> list[Point]:
        return sorted((p for p in self.points if p.status == "ok"), key=lambda p: -p.throughput)

    @property
    def best(self) -> Point | None:
        """The fastest eligible configuration; rn50 serve's own when it keeps the budget and nothing beats it by
        ``GAIN`` (a difference within the noise is no reason to change a configuration)."""
        if not self.eligible:
            return None
        base = self.default_point
        if base is not None and base.status == "ok" and self.eligible[0].throughput < base.throughput * GAIN:
            return base
        return self.eligible[0]

    @property
    def default_point(self) -> Point | None:
        return next((p for p in self.points if p.config == self.default), None)

    @property
    def closest(self) -> Point | None:
        """With no eligible point: the correct one with the lowest p99 (what came nearest the budget)."""
        right = [p for p in self.points if p.status == "over budget" and p.p99_ms is not None]
        return min(right, key=lambda p: p.p99_ms or 0.0, default=None)

    @property
    def checked(self) -> int:
        return sum(p.checked for p in self.points)

    @property
    def answered(self) -> int:
        return sum(p.answered for p in self.points)

    def verdict_line(self) -> str:
        best = self.best
        if best is None:
            near = self.closest
            return f"Tune: no configuration kept p99 ≤ {self.budget_ms:g} ms at {self.concurrency} clients" + (
                f"; the closest: {near.config.describe()}, p99 {near.p99_ms:.1f} ms, {near.throughput:.1f} img/s"
                if near is not None
                else ""
            )
        base = self.default_point
        if best is base:
            ratio = f" ({cmd('serve')}'s default: no configuration measured beats it by {GAIN - 1:.0%} or more)"
        elif base is not None and base.throughput > 0 and base.status != "failed":
            ratio = f", {best.throughput / base.throughput:.2f}× the default"
        else:
            ratio = ""
        return (
            f"Tune: serve with {best.config.describe()} — {best.throughput:.1f} img/s at {self.concurrency} clients, "
            f"p99 {best.p99_ms:.1f} ms ≤ {self.budget_ms:g} ms{ratio}"
        )


def to_dict(report: TuneReport) -> dict[str, Any]:
    data: dict[str, Any] = {"schema": SCHEMA, "verdict": report.verdict_line()}
    data |= jsonable(report)
    data["best"] = jsonable(report.best.config) if report.best is not None else None
    data["answers_checked"], data["answers_received"] = report.checked, report.answered
    return data


def from_dict(data: dict[str, Any]) -> TuneReport:
    points = tuple(Point(**(p | {"config": Config(**p["config"])})) for p in data["points"])
    fields = {k: data[k] for k in TuneReport.__dataclass_fields__ if k in data}
    return TuneReport(**(fields | {"default": Config(**data["default"]), "points": points}))


def load(path: Path) -> TuneReport:
    from rn50.errors import UsageError

    data = read_json(path, what="tune report", fix=f"pass a tune.json written by {cmd('tune')}")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise UsageError(f"{path} is not an {cmd('tune')} report", fix=f"run {cmd('tune')} again")
    try:
        return from_dict(data)
    except (KeyError, TypeError) as e:
        raise UsageError(f"{path} is a malformed tune report ({e})", fix=f"run {cmd('tune')} again") from None
