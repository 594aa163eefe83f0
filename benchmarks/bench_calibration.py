"""INT8 quality per calibration method and target on the seeded ResNet-50, measured on held-apart
sample crops (the evaluation split; calibration uses the calibration split), and the time to
calibrate 512 images with minmax.

Targets: each target's mean cosine >= 0.985 with the default method, which beats plain minmax;
512 images (minmax) in <= 60 s on 2 cores. Run by hand after `rn50 export --out DIR`:
    python benchmarks/bench_calibration.py --out DIR [--calib 128] [--eval 64]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from rn50 import feeds
from rn50.artifacts import WorkDir
from rn50.calibration.quantized import make_int8_files
from rn50.calibration.ranges import DEFAULT_METHOD
from rn50.calibration.table import table_for
from rn50.metrics import compare
from rn50.runtimes.ort_runner import OnnxRuntimeRunner
from rn50.runtimes.torch_runner import TorchRunner
from rn50.samples import sample_crops
from rn50.weights import load_model

METHODS = [("minmax", None), ("entropy", None), ("percentile", 99.99), ("percentile", 99.999)]


def run(path: Path, x: np.ndarray) -> np.ndarray:
    with OnnxRuntimeRunner(path, threads=os.cpu_count()) as r:
        return np.concatenate([r.infer({"input": x[i : i + 16]})["logits"] for i in range(0, len(x), 16)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("rn50-out"))
    ap.add_argument("--calib", type=int, default=128)
    ap.add_argument("--eval", type=int, default=64)
    ap.add_argument("--timing-images", type=int, default=512)
    args = ap.parse_args()
    x = sample_crops(args.eval, split="evaluation")
    with TorchRunner(load_model("seeded", depth=50).model) as ref_runner:
        ref = np.concatenate([ref_runner.infer({"input": x[i : i + 16]})["logits"] for i in range(0, len(x), 16)])
    calib = feeds.samples(args.calib, split="calibration")
    print(
        f"{args.calib} calibration crops, {args.eval} held-apart evaluation crops; cores {os.cpu_count()}; default "
        f"method {DEFAULT_METHOD}"
    )
    print("| method | target | cos mean | cos worst | SQNR dB | top-1 agr |\n|---|---|---|---|---|---|")
    for method, pct in METHODS:
        with tempfile.TemporaryDirectory() as tmp:
            for f in ("manifest.json", "resnet50.fp32.onnx"):
                shutil.copy(args.out / f, Path(tmp) / f)
            wd = WorkDir(tmp)
            table = table_for(wd, calib, method=method, percentile=pct).table
            for result in make_int8_files(wd, dict.fromkeys(["tensorrt", "onnxruntime-cpu"], table)):
                m = compare(run(result.path, x), ref)
                name = method + (f" {pct}" if pct else "")
                print(
                    f"| {name} | {result.target} | {m.cosine_mean:.4f} | {m.cosine_min:.4f} | {m.sqnr_db:.1f} | "
                    f"{m.top1_agreement:.3f} |"
                )
    with tempfile.TemporaryDirectory() as tmp:
        for f in ("manifest.json", "resnet50.fp32.onnx"):
            shutil.copy(args.out / f, Path(tmp) / f)
        big = feeds.samples(args.timing_images, split="calibration")
        start = time.perf_counter()
        table_for(WorkDir(tmp), big, method="minmax")
        took = time.perf_counter() - start
        print(
            f"\ncalibrating {args.timing_images} images (minmax): {took:.1f} s; target <= 60 s: "
            f"{'met' if took <= 60 else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
