"""What a profile run measured (profile.json): its settings, the machine, and per runtime × artifact × batch × mode
the latency statistics or why the row was not measured. Types and their JSON form only: the measuring is
``rn50.evaluation``'s, the Markdown and chart are ``rn50.reports``'."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from rn50.errors import UsageError
from rn50.jsonio import jsonable, read_json
from rn50.machine import check_batch_memory, check_threads, usable_cores
from rn50.metrics import DEFAULT_THRESHOLDS
from rn50.runtimes.registry import label
from rn50.runtimes.timing import LatencyStats
from rn50.words import cmd, opt

if TYPE_CHECKING:
    from pathlib import Path

PRECISIONS = tuple(DEFAULT_THRESHOLDS)  # what results are judged as (bf16: OpenVINO's bf16 on the FP32 model)


# Modes, with trtexec's names for what each measures.
Mode = Literal["host", "device", "device+cuda-graph"]


HOST: Mode = "host"


DEVICE: Mode = "device"


GRAPH: Mode = "device+cuda-graph"


METRIC_NAME: dict[str, str] = {HOST: "Latency", DEVICE: "GPU Compute Time", GRAPH: "GPU Compute Time (CUDA graph)"}


RowStatus = Literal["ok", "skipped", "error"]


DEFAULT_BATCHES = (1, 8)
WARMUP_S, DURATION_S = 0.5, 2.0  # `rn50 profile` and the pipeline's profile step alike


@dataclass(frozen=True)
class Settings:
    """How every row is measured (by profile and the pipeline's profile step: one set of flags and defaults)."""

    batches: tuple[int, ...] = DEFAULT_BATCHES
    warmup_s: float = WARMUP_S  # seconds of warm-up before each measured row
    warmup_iterations: int = 3  # warm-up iterations at least, whatever warmup_s says
    duration_s: float | None = DURATION_S  # seconds measured per runtime, artifact and batch
    iterations: int | None = None  # an exact number of measured iterations, instead of duration_s
    threads: int = field(default_factory=usable_cores)  # CPU threads of every CPU runtime
    cuda_graphs: bool = True  # GPU rows: also time the run replayed as a CUDA graph

    @property
    def phase(self) -> str:
        """The measured phase of every row, as reports word it: an exact count or a duration."""
        return f"{self.iterations} iterations" if self.iterations else f"{self.duration_s} s"

    def validate(self) -> None:
        from rn50.runtimes.timing import check_budget

        if not self.batches or any(b < 1 for b in self.batches):
            raise UsageError(
                f"{opt('batch')} {','.join(map(str, self.batches))}: batch sizes must be >= 1",
                fix=f"pass e.g. {opt('batch')} 1,8,32",
            )
        check_batch_memory(max(self.batches))
        check_threads(self.threads)
        if self.warmup_iterations < 0:
            raise UsageError(f"{opt('warmup_iterations')} {self.warmup_iterations} is negative", fix="pass 0 or more")
        check_budget(warmup_s=self.warmup_s, duration_s=self.duration_s, iterations=self.iterations)


def parse_batches(values: list[str] | None) -> tuple[int, ...]:
    """Batch sizes from --batch values (each already split at commas); None gives the default."""
    if not values:
        return DEFAULT_BATCHES
    try:
        batches = tuple(int(b) for b in values)
    except ValueError:
        raise UsageError(
            f"{opt('batch')} {','.join(values)!r} is not a list of integers", fix=f"pass e.g. {opt('batch')} 1,8,32"
        ) from None
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


REPORT = "profile.json"
SCHEMA = "rn50.profile/1"


def to_dict(report: ProfileReport) -> dict[str, Any]:
    data: dict[str, Any] = jsonable(report)
    for row, out in zip(report.rows, data["rows"], strict=True):
        out["metric"] = row.metric
        if row.stats is not None:
            out["stats"]["cv"] = row.stats.cv
    return data | {"schema": SCHEMA}


def from_dict(data: dict[str, Any]) -> ProfileReport:
    if data.get("schema") != SCHEMA:
        raise UsageError(
            f"not an {cmd('profile')} report (schema {data.get('schema')!r})",
            fix=f"pass a profile.json written by rn50 ({SCHEMA})",
        )
    rows = []
    for r in data["rows"]:
        r = {k: v for k, v in r.items() if k != "metric"}
        if r.get("stats") is not None:
            r["stats"] = LatencyStats(**{k: v for k, v in r["stats"].items() if k != "cv"})
        rows.append(Row(**r))
    s = dict(data["settings"])
    s["batches"] = tuple(s["batches"])
    return ProfileReport(Settings(**s), data["machine"], tuple(rows), data["created"])


def load(path: Path) -> ProfileReport:
    return from_dict(read_json(path, what="profile report", fix=f"pass a profile.json written by {cmd('profile')}"))
