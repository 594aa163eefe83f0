"""INT8 to an accuracy budget, measured: how many layers each target leaves out for a budget, how long the
search takes, what the result costs in ONNX Runtime CPU latency; the classifier (final Gemm) in INT8 vs in
float; int8 vs uint8 activations for ONNX Runtime. ResNet-50, seeded weights, sample-photo crops.

Run by hand after `rn50 export` and `rn50 calibrate` (64 crops) into the same directory:
    python benchmarks/bench_int8_budget.py --out rn50-out --budget min_cosine_mean=0.998 --threads 2
Latencies are medians of alternating runs (each file timed in turn, --rounds times), batch 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from rn50.artifacts import WorkDir
from rn50.calibration import budget
from rn50.calibration.quantized import emitter
from rn50.calibration.table import CalibrationTable
from rn50.commands.options import parse_budget
from rn50.metrics import compare
from rn50.runtimes.ort_runner import OnnxRuntimeRunner
from rn50.runtimes.timing import measure, summarize
from rn50.samples import sample_crops

OTHER_CROPS = 128


def latency_ms(models: dict[str, onnx.ModelProto], *, threads: int, rounds: int, duration: float) -> dict[str, float]:
    """Batch-1 median latency of each model, timed in turn ``rounds`` times (median of the rounds' medians)."""
    x = np.ascontiguousarray(sample_crops(1, split="evaluation"))
    out: dict[str, list[float]] = {k: [] for k in models}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        runners = {}
        for name, proto in models.items():
            path = Path(tmp) / f"{len(runners)}.onnx"
            onnx.save(proto, str(path))
            runners[name] = stack.enter_context(OnnxRuntimeRunner(path, threads=threads))
        for _ in range(rounds):
            for name, runner in runners.items():
                out[name].append(
                    summarize(
                        measure(lambda r=runner: r.infer({"input": x}), warmup_s=0.5, duration_s=duration), batch=1
                    ).median_ms
                )
    return {k: float(np.median(v)) for k, v in out.items()}


def s8_activations(fp32: onnx.ModelProto, table: CalibrationTable) -> onnx.ModelProto:
    """The onnxruntime-cpu target's file with int8 activations (ONNX Runtime's QInt8 default elsewhere), every
    Conv/Gemm INT8."""
    from rn50.calibration import qdq_onnxruntime

    original = qdq_onnxruntime.ACTIVATION_TYPE
    qdq_onnxruntime.ACTIVATION_TYPE = "QInt8"
    try:
        return qdq_onnxruntime.emit(fp32, table)
    finally:
        qdq_onnxruntime.ACTIVATION_TYPE = original


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("rn50-out"))
    ap.add_argument("--budget", default="min_cosine_mean=0.998")
    ap.add_argument("--max-excluded", type=int, default=54)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--targets", default="onnxruntime-cpu,tensorrt")
    args = ap.parse_args()
    workdir = WorkDir(args.out)
    fp32 = onnx.load(str(workdir.path("resnet50.fp32.onnx")))
    tables = sorted(workdir.path("calibration").glob("*.json"), key=lambda p: p.stat().st_mtime)
    table = CalibrationTable.load(tables[-1])
    limits = parse_budget([args.budget])
    crops = sample_crops(budget.BUDGET_CROPS, split="evaluation")
    evaluator = budget.Evaluator(fp32, crops)
    # Crops rn50 never chooses by: the evaluation split past the budget's (quantize and parity use its first 64).
    others = sample_crops(budget.BUDGET_CROPS + OTHER_CROPS, split="evaluation")[budget.BUDGET_CROPS :]
    others_fp32 = budget.Evaluator.run(fp32, others, [])[0]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; threads {args.threads}; "
        f"table {table.method} {table.options} on {table.images} images; {len(crops)} held-apart crops"
    )

    for target in args.targets.split(","):
        emit = emitter(fp32, table, target)  # the default: classifier in float
        full = emitter(fp32, table, target, classifier="int8")(frozenset())
        head_float = emit(frozenset())
        a, b = evaluator.measure(full), evaluator.measure(head_float)
        print(
            f"\n[{target}] classifier: INT8 cos mean {a.cosine_mean:.6f} worst {a.cosine_min:.6f} top-1 "
            f"{a.top1_agreement:.3f} | "
            f"float cos mean {b.cosine_mean:.6f} worst {b.cosine_min:.6f} top-1 {b.top1_agreement:.3f}"
        )
        started = time.perf_counter()
        found, proto = budget.search(
            fp32, emit, target=target, budget=limits, max_excluded=args.max_excluded, crops=crops
        )
        print(f"[{target}] search: {found.summary()}; wall {time.perf_counter() - started:.0f} s")
        print(f"[{target}] left out: {', '.join(found.excluded) or 'none'}")
        held = compare(budget.Evaluator.run(proto, others, [])[0], others_fp32)
        print(
            f"[{target}] the search's file on {len(others)} other held-apart crops (evaluation split "
            f"{budget.BUDGET_CROPS + 1}–{budget.BUDGET_CROPS + OTHER_CROPS}): cos mean {held.cosine_mean:.6f} worst "
            f"{held.cosine_min:.6f} top-1 {held.top1_agreement:.3f}"
        )
        print(f"[{target}] top of the ranking: " + ", ".join(f"{r.node} {r.gain:+.5f}" for r in found.ranking[:8]))
        if target == "onnxruntime-cpu":
            models = {
                "fully quantized (classifier INT8)": full,
                "default (classifier float)": head_float,
                "budget file": proto,
                "int8 activations": s8_activations(fp32, table),
            }
            ms = latency_ms(models, threads=args.threads, rounds=args.rounds, duration=args.duration)
            base = ms["default (classifier float)"]
            print(
                f"[{target}] batch-1 median latency, {args.threads} threads: "
                + "; ".join(f"{k} {v:.2f} ms ({v / base:.2f}x)" for k, v in ms.items())
            )


if __name__ == "__main__":
    main()
