"""What a pipeline run did: each step's status, time and detail, and the error that stopped it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from rn50.errors import Rn50Error

StepStatus = Literal["ran", "reused", "skipped", "failed", "not run"]


@dataclass(frozen=True)
class StepResult:
    name: str
    status: StepStatus
    detail: str
    seconds: float = 0.0


@dataclass(frozen=True)
class PipelineResult:
    steps: tuple[StepResult, ...]
    error: Rn50Error | None = None

    @property
    def failed(self) -> StepResult | None:
        return next((s for s in self.steps if s.status == "failed"), None)

    @property
    def started(self) -> bool:
        """Whether any step did or reused work (a run refused before that leaves the directory alone)."""
        return any(s.status in ("ran", "reused") for s in self.steps)
