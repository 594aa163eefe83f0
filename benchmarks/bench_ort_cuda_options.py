"""ONNX Runtime's CUDA provider settings side by side, on one GPU in one run: NCHW vs NHWC convolutions
(``prefer_nhwc``) and TF32 on vs off (``use_tf32``), for the FP32 and FP16 files. For each: GPU Compute
Time (inputs and outputs on the device, CUDA events; rn50's own device bench) at batch 1 and 256 and,
at batch 8 on held-apart crops, the logits against the PyTorch FP32 reference on the same GPU (TF32 off).
It is what chose rn50's ``CUDA_OPTIONS`` (runtimes/ort_runner.py). Also prints ONNX Runtime's own
defaults for the provider.

Run after `rn50 export` and `rn50 quantize --fp16` into the same directory, on a CUDA host:
    python benchmarks/bench_ort_cuda_options.py --out rn50-out --json options.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from rn50.artifacts import WorkDir
from rn50.evaluation.measurement import inputs
from rn50.metrics import compare
from rn50.runtimes.ort_runner import OnnxRuntimeRunner
from rn50.runtimes.timing import collect, summarize
from rn50.runtimes.torch_runner import TorchRunner
from rn50.samples import sample_crops
from rn50.weights import workdir_model

CONFIGS = {
    "nchw, tf32 off": {"prefer_nhwc": "0", "use_tf32": "0"},
    "nhwc, tf32 off": {"prefer_nhwc": "1", "use_tf32": "0"},
    "nchw, tf32 on": {"prefer_nhwc": "0", "use_tf32": "1"},
    "nhwc, tf32 on": {"prefer_nhwc": "1", "use_tf32": "1"},
    # FP16 only: ONNX Runtime's conv-bias fusion and cuDNN's heuristic algorithm choice
    "nhwc, fuse_conv_bias": {"prefer_nhwc": "1", "use_tf32": "0", "fuse_conv_bias": "1"},
    "nhwc, heuristic search": {"prefer_nhwc": "1", "use_tf32": "0", "cudnn_conv_algo_search": "HEURISTIC"},
}
FP16_ONLY = ("nhwc, fuse_conv_bias", "nhwc, heuristic search")


def torch_fp16_img_s(model: torch.nn.Module, batch: int, pool: np.ndarray, duration_s: float) -> float:
    """PyTorch eager FP16, channels-last, on the same GPU: what the GPU does with cuDNN directly (a yardstick)."""
    from rn50.runtimes.device import TorchCuda

    half = model.half().to(memory_format=torch.channels_last)
    x = torch.from_numpy(inputs(batch, pool)["input"]).cuda().half().to(memory_format=torch.channels_last)
    cuda = TorchCuda()
    stream = cuda.stream()

    def enqueue() -> None:
        with torch.inference_mode(), torch.cuda.stream(stream):
            half(x)

    ms = summarize(collect(cuda.timer(stream, enqueue), warmup_s=0.5, duration_s=duration_s), batch=batch).median_ms
    return batch / ms * 1e3


def device_ms(runner: OnnxRuntimeRunner, batch: int, pool: np.ndarray, duration_s: float) -> float:
    bench = runner.device_bench(inputs(batch, pool), cuda_graph=False)
    assert bench is not None
    timer = bench.memory.timer(bench.stream, bench.enqueue)
    return summarize(collect(timer, warmup_s=0.3, duration_s=duration_s), batch=batch).median_ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("rn50-out"))
    ap.add_argument("--batches", default="1,256")
    ap.add_argument("--duration", type=float, default=1.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    workdir = WorkDir(args.out)
    files = {
        a.precision: workdir.path(a.path)
        for a in workdir.artifacts()
        if a.kind == "onnx" and a.precision in ("fp32", "fp16")
    }
    pool = sample_crops(16, split="evaluation")
    x = {"input": np.ascontiguousarray(pool[:8])}
    with TorchRunner(workdir_model(workdir), device="cuda") as ref:
        want = ref.infer(x)["logits"]
    results = []
    print(f"{torch.cuda.get_device_name()}; GPU Compute Time medians, {args.duration} s per batch")
    for precision, path in sorted(files.items()):
        for name, options in CONFIGS.items():
            if precision == "fp16" and options["use_tf32"] == "1":
                continue  # TF32 applies to FP32 arithmetic only
            if precision != "fp16" and name in FP16_ONLY:
                continue
            with OnnxRuntimeRunner(path, provider="cuda", cuda_options=options) as runner:
                got = runner.session.get_provider_options()["CUDAExecutionProvider"]
                m = compare(runner.infer(x)["logits"], want)
                row = {
                    "precision": precision,
                    "config": name,
                    "options": {k: got.get(k) for k in options},
                    "cosine_min": m.cosine_min,
                    "max_abs": m.max_abs,
                    "top1": m.top1_agreement,
                }
                for batch in (int(b) for b in args.batches.split(",")):
                    ms = device_ms(runner, batch, pool, args.duration)
                    row[f"b{batch}_ms"], row[f"b{batch}_img_s"] = ms, batch / ms * 1e3
            results.append(row)
            print(json.dumps(row))
    with OnnxRuntimeRunner(files["fp32"], provider="cuda", cuda_options={}) as runner:
        defaults = runner.session.get_provider_options()["CUDAExecutionProvider"]
    print("onnxruntime defaults:", json.dumps(defaults))
    yardstick = {
        f"b{b}_img_s": torch_fp16_img_s(workdir_model(workdir).eval().cuda(), b, pool, args.duration)
        for b in (int(b) for b in args.batches.split(","))
    }
    print("torch eager fp16 channels-last:", json.dumps(yardstick))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "device": torch.cuda.get_device_name(),
                    "results": results,
                    "defaults": defaults,
                    "torch_fp16_channels_last": yardstick,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
