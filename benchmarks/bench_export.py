"""`rn50 export` end to end (fresh process: imports, seeded weights, torch.export, onnxsim, verify).

Pair: <= 20 s for ResNet-50 on a 2-core machine. Run by hand: python benchmarks/bench_export.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--depth", type=int, default=50)
    args = parser.parse_args()
    times = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "rn50", "export", "--depth", str(args.depth), "--out", out, "--json"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(
        f"rn50 export ResNet-{args.depth}: median {median:.1f} s over {args.runs} runs "
        f"(min {min(times):.1f}, max {max(times):.1f}); cores {os.cpu_count()}; target <= 20 s: "
        f"{'met' if median <= 20 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
