"""PyTorch's compiled path on the CPU, measured: torch.compile (Inductor, freezing) against eager, ResNet-50 with
rn50's seeded weights: the compile cost of each batch size's first run (seconds, peak RSS) and the median latency of
both, timed in turn. What rn50's `torch-compile-cpu` runner runs (rn50.runtimes.torch_runner).

    python benchmarks/bench_torch_compile.py --threads 2 --batches 1,8 --rounds 3 --duration 5
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np
import torch

from rn50.machine import cpu_info
from rn50.runtimes.timing import measure, summarize
from rn50.runtimes.torch_runner import TorchCompileRunner, TorchRunner
from rn50.samples import sample_crops
from rn50.weights import seeded


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    model = seeded(50).model
    crops = sample_crops(max(batches), split="evaluation")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU class "
        f"{cpu_info()['int8_class']}; torch {torch.__version__}; threads {args.threads}"
    )
    eager = TorchRunner(model, threads=args.threads, label="eager")
    compiled = TorchCompileRunner(model, threads=args.threads, label="torch.compile")
    with eager, compiled:
        for b in batches:
            feed = {"input": np.ascontiguousarray(crops[:b])}
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            start = time.perf_counter()
            got = compiled.infer(feed)["logits"]
            seconds = time.perf_counter() - start
            grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss
            ref = eager.infer(feed)["logits"]
            rel = float(np.abs(got - ref).max() / np.abs(ref).max())
            print(
                f"batch {b}: compile + first run {seconds:.1f} s, peak RSS +{grown:.0f} MB; "
                f"max abs error / max |logit| vs eager {rel:.2e}"
            )
        for b in batches:
            feed = {"input": np.ascontiguousarray(crops[:b])}
            medians: dict[str, list[float]] = {"eager": [], "torch.compile": []}
            for _ in range(args.rounds):
                for name, runner in (("eager", eager), ("torch.compile", compiled)):
                    samples = measure(lambda r=runner, f=feed: r.infer(f), warmup_s=1.0, duration_s=args.duration)
                    medians[name].append(summarize(samples, batch=b).median_ms)
            e, c = (float(np.median(medians[k])) for k in ("eager", "torch.compile"))
            print(
                f"batch {b}: eager {e:.2f} ms ({1000 * b / e:.1f} img/s), torch.compile {c:.2f} ms "
                f"({1000 * b / c:.1f} img/s): {e / c:.2f}x (median of {args.rounds} alternating {args.duration:.0f} s "
                "runs)"
            )


if __name__ == "__main__":
    main()
