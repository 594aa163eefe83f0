"""Every CPU path side by side in one run, as ratios to PyTorch eager FP32 (ResNet-50, seeded weights).

Targets at batch 1: ONNX Runtime FP32 <= 0.6x, ONNX Runtime INT8 (onnxruntime-cpu target) <= 0.25x.
Run by hand after `rn50 export` and `rn50 quantize --int8 --fp16` into the same directory:
    python benchmarks/bench_cpu_latency.py --out rn50-out --threads 2
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import numpy as np
import torch

from rn50.artifacts import WorkDir
from rn50.runtimes.ort_runner import OnnxRuntimeRunner
from rn50.runtimes.timing import measure, summarize
from rn50.samples import sample_crops
from rn50.weights import load_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("rn50-out"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    workdir = WorkDir(args.out)
    model = load_model("seeded", depth=50).model.eval()
    ort_files = {a.name: workdir.path(a.path) for a in workdir.artifacts() if a.kind == "onnx"}
    compiled = None
    if not args.no_compile:
        try:
            compiled = torch.compile(model)
        except Exception as e:  # noqa: BLE001 - report and go on
            print(f"torch.compile unavailable: {e}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; threads {args.threads}; "
        f"torch {torch.__version__}; duration {args.duration}s per path; median latency"
    )
    for batch in (int(b) for b in args.batches.split(",")):
        x = np.ascontiguousarray(sample_crops(batch, split="evaluation"))
        xt = torch.from_numpy(x)
        rows: dict[str, float] = {}

        def torch_run(m: torch.nn.Module, xt: torch.Tensor = xt) -> None:
            with torch.inference_mode():
                m(xt)

        rows["torch eager fp32"] = summarize(
            measure(lambda: torch_run(model), duration_s=args.duration), batch=batch
        ).median_ms
        if compiled is not None:
            try:
                rows["torch.compile fp32"] = summarize(
                    measure(lambda: torch_run(compiled), warmup_s=5, duration_s=args.duration), batch=batch
                ).median_ms
            except Exception as e:  # noqa: BLE001
                print(f"torch.compile failed: {str(e).splitlines()[0]}")
        for name, path in sorted(ort_files.items()):
            with OnnxRuntimeRunner(path, threads=args.threads) as r:
                feed = {"input": x}
                rows[f"onnxruntime {name}"] = summarize(
                    measure(lambda r=r, feed=feed: r.infer(feed), duration_s=args.duration), batch=batch
                ).median_ms
        base = rows["torch eager fp32"]
        print(f"\nbatch {batch}")
        print("| path | median ms | ratio to torch eager |\n|---|---|---|")
        for name, ms in rows.items():
            print(f"| {name} | {ms:.2f} | {ms / base:.3f}x |")


if __name__ == "__main__":
    main()
