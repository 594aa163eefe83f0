"""What a load test found (loadtest.json): per concurrency level the answers, throughput, latency, the batches
Triton formed and the wrong answers; every answer against the reference together. Types and their JSON form only."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rn50.jsonio import jsonable, read_json
from rn50.words import cmd

if TYPE_CHECKING:
    from pathlib import Path

    from rn50.metrics import OutputMetrics, Thresholds
    from rn50.serving.clients import Level, ServedModelInfo


@dataclass(frozen=True)
class LoadtestReport:
    url: str
    protocol: str
    model: ServedModelInfo
    precision: str
    thresholds: Thresholds
    phase: str
    feeds: str
    levels: tuple[Level, ...]
    overall: OutputMetrics | None  # every answer of every level against the reference
    failures: tuple[str, ...]  # of the aggregate thresholds (mean cosine, top-1)
    machine: dict[str, Any]
    created: float = field(default_factory=time.time)

    @property
    def errors(self) -> int:
        return sum(level.errors for level in self.levels)

    @property
    def wrong(self) -> int:
        return sum(level.wrong for level in self.levels)

    @property
    def answered(self) -> int:
        return sum(level.requests for level in self.levels)

    @property
    def passed(self) -> bool:
        return self.answered > 0 and not self.errors and not self.wrong and not self.failures

    def verdict_line(self) -> str:
        if self.passed:
            return f"Load test: PASS — {self.answered} answers from {self.model.name}, none wrong, no failed request"
        parts = [f"{self.wrong} wrong answer(s)"] if self.wrong else []
        parts += [f"{self.errors} failed request(s)"] if self.errors else []
        parts += list(self.failures)
        why = "; ".join(parts) or "no request was answered"
        return f"Load test: FAIL — {why} (of {self.answered + self.errors} requests to {self.model.name})"


SCHEMA = "rn50.loadtest/1"


REPORT = "loadtest.json"


def to_dict(report: LoadtestReport) -> dict[str, Any]:
    data: dict[str, Any] = {"schema": SCHEMA, "passed": report.passed, "verdict": report.verdict_line()}
    data |= jsonable(report)
    for level, out in zip(report.levels, data["levels"], strict=True):
        out["formed_batch_mean"] = level.formed_batch
        out["formed_batch_common"] = level.common_batch
    return data


def _level(data: dict[str, Any]) -> Level:
    from rn50.metrics import OutputMetrics
    from rn50.runtimes.timing import LatencyStats
    from rn50.serving.clients import Level

    values = {k: data[k] for k in Level.__dataclass_fields__ if k in data}
    return Level(
        **values
        | {
            "latency": LatencyStats(**data["latency"]) if data.get("latency") else None,
            "batches": {int(b): int(n) for b, n in data["batches"].items()},  # JSON keys are strings
            "error_examples": tuple(data["error_examples"]),
            "wrong_examples": tuple(data["wrong_examples"]),
            "metrics": OutputMetrics.from_dict(data["metrics"]) if data.get("metrics") else None,
        }
    )


def from_dict(data: dict[str, Any]) -> LoadtestReport:
    from rn50.metrics import OutputMetrics, Thresholds
    from rn50.serving.clients import ServedModelInfo

    values = {k: data[k] for k in LoadtestReport.__dataclass_fields__ if k in data}
    return LoadtestReport(
        **values
        | {
            "model": ServedModelInfo(**data["model"]),
            "thresholds": Thresholds(**data["thresholds"]),
            "levels": tuple(_level(level) for level in data["levels"]),
            "overall": OutputMetrics.from_dict(data["overall"]) if data.get("overall") else None,
            "failures": tuple(data["failures"]),
        }
    )


def load(path: Path) -> LoadtestReport:
    from rn50.errors import UsageError

    data = read_json(path, what="load-test report", fix=f"pass a loadtest.json written by {cmd('loadtest')}")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise UsageError(f"{path} is not an rn50 load-test report", fix=f"run {cmd('loadtest')} again")
    try:
        return from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UsageError(f"{path} is a malformed load-test report ({e})", fix=f"run {cmd('loadtest')} again") from None
