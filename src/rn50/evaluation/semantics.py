"""Running a runner over feeds, and an INT8 file's own semantics (the third reference of an INT8 result): a Q/DQ ONNX
file's, or a PT2E-quantized program's."""

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
    and float operators run as written, no integer kernels), so the same on every CPU up to float rounding; for a
    PT2E-quantized program (an INT8 AOTInductor package's), PyTorch running it eagerly, likewise."""
    from rn50.runtimes.pt2_package import is_program

    label = f"{SEMANTICS} · {qdq.name}"
    runner: Runner
    if is_program(qdq):
        from rn50.runtimes.aoti_runner import ProgramRunner

        runner = ProgramRunner(qdq, threads=threads, label=label)
    else:
        from rn50.runtimes.ort_runner import OnnxRuntimeRunner

        runner = OnnxRuntimeRunner(qdq, provider="cpu", threads=threads, optimize=False, label=label)
    with runner:
        return run_batches(runner, feeds, batch)
