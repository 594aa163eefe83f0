"""PyTorch's deployment paths beside the exported engines on this CPU, one process per row: eager, torch.compile,
the AOTInductor packages (FP32, and PT2E INT8), ONNX Runtime and OpenVINO on the FP32 and INT8 ONNX files — each row
`rn50 profile` in its own process (so no runtime's threads, allocator or compiled code touch another's), batch 1 and
8, medians. Needs a work directory with the packages: `rn50 pipeline` (its pt2 step), or `rn50 export --pt2` and
`rn50 quantize --int8 --pt2`.

    python benchmarks/bench_pytorch_paths.py --out rn50-out --threads 2 --duration 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from rn50.machine import cpu_info

ROWS = (  # (what the README calls it, runtime, artifact)
    ("eager", "torch-cpu", "pytorch-fp32"),
    ("torch.compile, Inductor's defaults", "torch-compile-cpu-default", "pytorch-fp32"),
    ("torch.compile, freezing", "torch-compile-cpu", "pytorch-fp32"),
    ("AOTI FP32", "aoti-cpu", "pt2-fp32-cpu"),
    ("AOTI INT8 (PT2E)", "aoti-cpu", "pt2-int8-cpu"),
    ("ONNX Runtime FP32", "onnxruntime-cpu", "onnx-fp32"),
    ("ONNX Runtime INT8", "onnxruntime-cpu", "onnx-int8-onnxruntime-cpu"),
    ("OpenVINO FP32", "openvino-cpu", "onnx-fp32"),
    ("OpenVINO INT8", "openvino-cpu", "onnx-int8-onnxruntime-cpu"),
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="rn50-out", help="the work directory holding the artifacts")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--duration", type=float, default=5.0)
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    rn50 = [sys.executable, "-m", "rn50"]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU class "
        f"{cpu_info()['int8_class']}; threads {args.threads}; {args.duration} s per row and batch, one process a row"
    )
    header = "| path | runtime · artifact | " + " | ".join(f"batch {b}: ms | img/s" for b in batches) + " |"
    lines = [header, "| --- | --- | " + " | ".join("--- | ---" for _ in batches) + " |"]
    for name, runtime, artifact in ROWS:
        done = subprocess.run(
            [*rn50, "profile", "--out", args.out, "--runtime", runtime, "--artifact", artifact]
            + ["--batch", args.batches, "--duration", str(args.duration), "--threads", str(args.threads)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            lines.append(f"| {name} | {runtime} · {artifact} | failed: {done.stderr.strip().splitlines()[-1:]} |")
            continue
        rows = json.loads((Path(args.out) / "profile.json").read_text())["rows"]
        cells = []
        for b in batches:
            row = next((r for r in rows if r["batch"] == b and r["status"] == "ok"), None)
            stats = row["stats"] if row else None
            cells.append(f"{stats['median_ms']:.1f} | {stats['throughput']:.1f}" if stats else "– | –")
        lines.append(f"| {name} | {runtime} · {artifact} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
