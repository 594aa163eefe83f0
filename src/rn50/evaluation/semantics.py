"""Running a runner over feeds, and a Q/DQ file's own semantics (the third reference of an INT8 result)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

    from rn50.feeds import FeedSet
    from rn50.runtimes.base import Runner

OUTPUT = "logits"


def run_batches(runner: Runner, feeds: FeedSet, batch: int) -> np.ndarray:
    return np.concatenate([runner.infer({"input": b})[OUTPUT] for b in feeds.batches(batch)])


SEMANTICS = "file semantics"  # how the third reference is named in progress lines and reports


def semantics(qdq: Path, feeds: FeedSet, batch: int, *, threads: int | None) -> np.ndarray:
    """The logits a Q/DQ file says it computes: ONNX Runtime's CPU provider with graph optimizations off (Q/DQ
    and float operators run as written, no integer kernels), so the same on every CPU up to float rounding."""
    from rn50.runtimes.ort_runner import OnnxRuntimeRunner

    with OnnxRuntimeRunner(
        qdq, provider="cpu", threads=threads, optimize=False, label=f"{SEMANTICS} · {qdq.name}"
    ) as runner:
        return run_batches(runner, feeds, batch)
