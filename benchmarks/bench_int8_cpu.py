"""INT8 on every CPU, measured: each Q/DQ form rn50 can write (the onnxruntime-cpu file for vnni- and for
avx2-class CPUs, the TensorRT file) on ONNX Runtime CPU and OpenVINO, three ways — the file's own semantics
vs FP32 (the quantization error), the runtime vs FP32, the runtime vs the file (its fidelity) — and, on
the machine's own CPU, batch-1 latency of each form beside PyTorch eager FP32 and ONNX Runtime FP32.

Run by hand after `rn50 export` and `rn50 calibrate` into the same directory:
    python benchmarks/bench_int8_cpu.py --out rn50-out --crops 64 --threads 2
    python benchmarks/bench_int8_cpu.py --out rn50-out --crops 32 --emulate Haswell   # a CPU without VNNI
``--emulate CPU`` runs the accuracy part under ``qemu-x86_64 -cpu CPU`` (apt install qemu-user): the real INT8
kernels of that CPU (Haswell: AVX2 and FMA, no AVX-512, no VNNI), whatever this machine is — its numbers are
that CPU's, its speed is not (no latency then). Latencies are medians of alternating runs, batch 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

FORMS = {
    "onnxruntime-cpu (vnni)": ("onnxruntime-cpu", "vnni"),
    "onnxruntime-cpu (avx2)": ("onnxruntime-cpu", "avx2"),
    "tensorrt": ("tensorrt", "vnni"),
}


def make_forms(out: Path, folder: Path) -> dict[str, Path]:
    """Every form, emitted by rn50's own emitter from the work directory's FP32 model and calibration table."""
    from rn50.calibration.quantized import emitter
    from rn50.calibration.table import CalibrationTable

    fp32 = onnx.load(str(out / "resnet50.fp32.onnx"))
    table = CalibrationTable.load(sorted((out / "calibration").glob("*.json"))[0])
    paths = {"fp32": out / "resnet50.fp32.onnx"}
    for name, (target, cpu) in FORMS.items():
        paths[name] = folder / f"{target}-{cpu}.onnx"
        onnx.save(emitter(fp32, table, target, cpu_class=cpu)(frozenset()), str(paths[name]))
    return paths


def accuracy(paths: dict[str, Path], crops: int, threads: int) -> dict[str, object]:
    """Semantics, runtime vs FP32, runtime vs semantics, per form and runtime; on whatever CPU this process sees."""
    from rn50.evaluation.semantics import run_batches, semantics
    from rn50.feeds import samples
    from rn50.machine import cpu_info
    from rn50.metrics import compare
    from rn50.runtimes.registry import Pair, make_runner, unavailable_reason

    feeds = samples(crops, split="evaluation")
    ref = semantics(paths["fp32"], feeds, 8, threads=threads)  # the FP32 graph (PyTorch differs from it by ~1e-6)
    rows = []
    for name, path in paths.items():
        if name == "fp32":
            continue
        file = semantics(path, feeds, 8, threads=threads)
        row: dict[str, object] = {"form": name, "file_vs_fp32": compare(file, ref).to_dict()}
        for runtime in ("onnxruntime-cpu", "openvino-cpu"):
            if unavailable_reason(runtime):
                continue
            with make_runner(Pair(runtime, "int8", name, path), threads=threads) as runner:
                got = run_batches(runner, feeds, 8)
            row[runtime] = {"vs_fp32": compare(got, ref).to_dict(), "vs_file": compare(got, file).to_dict()}
        rows.append(row)
    return {"cpu": cpu_info(), "crops": crops, "rows": rows}


def latency(paths: dict[str, Path], threads: int, rounds: int, duration: float) -> dict[str, float]:
    """Batch-1 median latency (ms): PyTorch eager FP32, ONNX Runtime FP32, each form on each CPU runtime, in turn."""
    from rn50.runtimes.registry import Pair, make_runner
    from rn50.runtimes.timing import measure, summarize
    from rn50.samples import sample_crops
    from rn50.weights import load_model

    x = {"input": np.ascontiguousarray(sample_crops(1, split="evaluation"))}
    times: dict[str, list[float]] = {}
    with contextlib.ExitStack() as stack:
        runners = {
            "torch-cpu fp32": stack.enter_context(
                make_runner(
                    Pair("torch-cpu", "fp32", "pytorch-fp32", None),
                    model=lambda: load_model("seeded", depth=50).model,
                )
            )
        }
        for name, path in paths.items():
            for runtime in ("onnxruntime-cpu", "openvino-cpu"):
                precision = "fp32" if name == "fp32" else "int8"
                runners[f"{runtime} {name}"] = stack.enter_context(
                    make_runner(Pair(runtime, precision, name, path), threads=threads)
                )
        import torch

        torch.set_num_threads(threads)
        for _ in range(rounds):
            for key, runner in runners.items():
                stats = summarize(measure(lambda r=runner: r.infer(x), warmup_s=0.5, duration_s=duration), batch=1)
                times.setdefault(key, []).append(stats.median_ms)
    return {k: float(np.median(v)) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("rn50-out"))
    parser.add_argument("--crops", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--emulate", help="qemu CPU model for the accuracy part, e.g. Haswell (no latency then)")
    parser.add_argument("--accuracy-only", type=Path, help=argparse.SUPPRESS)  # the part run under the emulator
    args = parser.parse_args()
    if args.accuracy_only:  # inside the emulator: the forms are already written
        paths = json.loads(args.accuracy_only.read_text())
        print(json.dumps(accuracy({k: Path(v) for k, v in paths.items()}, args.crops, args.threads)))
        return
    with tempfile.TemporaryDirectory(prefix="rn50-int8-cpu-") as tmp:
        paths = make_forms(args.out, Path(tmp))
        started = time.perf_counter()
        if args.emulate:
            qemu = shutil.which("qemu-x86_64")
            if qemu is None:
                sys.exit("--emulate needs qemu-x86_64 (apt install qemu-user)")
            listing = Path(tmp) / "paths.json"
            listing.write_text(json.dumps({k: str(v) for k, v in paths.items()}))
            done = subprocess.run(
                [
                    qemu,
                    "-cpu",
                    args.emulate,
                    sys.executable,
                    __file__,
                    "--accuracy-only",
                    str(listing),
                    "--crops",
                    str(args.crops),
                    "--threads",
                    str(args.threads),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1]) | {"emulated": args.emulate}
        else:
            result = accuracy(paths, args.crops, args.threads) | {
                "latency_ms": latency(paths, args.threads, args.rounds, args.duration)
            }
        result["seconds"] = time.perf_counter() - started
    print(json.dumps(result, indent=1))
    print(
        f"CPU: {result['cpu']['model']} (INT8 class "
        f"{result['cpu']['int8_class']}{', emulated ' + args.emulate if args.emulate else ''}), "
        f"{args.crops} held-apart crops, {args.threads} threads"
    )
    print(
        "| form | file vs FP32 (mean / worst) | runtime | runtime vs FP32 (mean / worst, top-1) | runtime vs file "
        "(mean / worst) |"
    )
    print("| --- | --- | --- | --- | --- |")
    for row in result["rows"]:
        f = row["file_vs_fp32"]
        for runtime in ("onnxruntime-cpu", "openvino-cpu"):
            if runtime in row:
                a, b = row[runtime]["vs_fp32"], row[runtime]["vs_file"]
                print(
                    f"| {row['form']} | {f['cosine_mean']:.4f} / {f['cosine_min']:.4f} | {runtime} | "
                    f"{a['cosine_mean']:.4f} / "
                    f"{a['cosine_min']:.4f}, {a['top1_agreement']:.2f} | {b['cosine_mean']:.4f} / "
                    f"{b['cosine_min']:.4f} |"
                )
    if "latency_ms" in result:
        base = result["latency_ms"]["torch-cpu fp32"]
        for key, ms in result["latency_ms"].items():
            print(f"| {key} | {ms:.2f} ms | {ms / base:.2f}× PyTorch eager FP32 |")


if __name__ == "__main__":
    main()
