"""Export verification: ONNX Runtime CPU against the PyTorch model, on sample photos at several batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rn50.metrics import CLASSIFIER, OutputMetrics, Thresholds, compare, thresholds_for
from rn50.runtimes.ort_runner import OnnxRuntimeRunner
from rn50.runtimes.torch_runner import TorchRunner
from rn50.samples import sample_crops

if TYPE_CHECKING:
    from pathlib import Path

    import torch

VERIFY_BATCHES = (1, 2, 8)


@dataclass(frozen=True)
class BatchCheck:
    batch: int
    metrics: OutputMetrics
    failures: tuple[str, ...]


@dataclass(frozen=True)
class Verification:
    checks: tuple[BatchCheck, ...]
    thresholds: Thresholds

    @property
    def passed(self) -> bool:
        return not any(c.failures for c in self.checks)

    @property
    def max_abs(self) -> float:
        return max(c.metrics.max_abs for c in self.checks)

    @property
    def cosine_min(self) -> float:
        return min(c.metrics.cosine_min for c in self.checks)

    def failures(self) -> list[str]:
        return [f"batch {c.batch}: {f}" for c in self.checks for f in c.failures]


def verify_onnx(
    onnx_path: Path,
    model: torch.nn.Module,
    *,
    batches: tuple[int, ...] = VERIFY_BATCHES,
    thresholds: Thresholds | None = None,
    head: str = CLASSIFIER,
) -> Verification:
    """Run the ONNX file in ONNX Runtime CPU and the model in PyTorch on the same sample crops (an embedding
    ``head``: without top-1)."""
    limits = thresholds or thresholds_for("fp32")
    crops = sample_crops(sum(batches), split="evaluation")
    checks = []
    with OnnxRuntimeRunner(onnx_path, provider="cpu") as ort, TorchRunner(model) as ref:
        start = 0
        for b in batches:
            feed = {"input": np.ascontiguousarray(crops[start : start + b])}
            start += b
            m = compare(ort.infer(feed)["logits"], ref.infer(feed)["logits"], classes=head == CLASSIFIER)
            checks.append(BatchCheck(b, m, tuple(limits.failures(m))))
    return Verification(tuple(checks), limits)
