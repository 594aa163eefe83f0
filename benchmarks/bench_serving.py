"""Served on Triton vs in-process, side by side (issue target: at 8 concurrent single-image clients, the
served ONNX Runtime INT8 model keeps >= 70 % of the throughput `rn50 profile` measures in-process at the
batch size Triton forms, with zero wrong answers over >= 2,000 requests).

Each round, on a copy of the work directory: `rn50 serve` (onnx-int8-onnxruntime-cpu, --threads T), then
`rn50 loadtest --concurrency C --requests N` from the same machine (clients and server share its cores),
server stopped; then `rn50 profile` of the same file in-process at the batch size Triton formed most
images into, same threads. Rounds alternate; medians are reported. Run by hand after `rn50 pipeline`:
    python benchmarks/bench_serving.py --out rn50-out --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARTIFACT = "onnx-int8-onnxruntime-cpu"
RN50 = [sys.executable, "-m", "rn50"]


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def served(work: Path, args: argparse.Namespace) -> dict:
    http, grpc, metrics = free_ports(3)
    server = subprocess.Popen(
        [
            *RN50,
            "serve",
            "--out",
            str(work),
            "--artifact",
            ARTIFACT,
            "--threads",
            str(args.threads),
            "--max-batch-size",
            str(args.max_batch),
            "--port",
            str(http),
            "--grpc-port",
            str(grpc),
            "--metrics-port",
            str(metrics),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        done = subprocess.run(
            [
                *RN50,
                "loadtest",
                "--out",
                str(work),
                "--url",
                f"127.0.0.1:{http}",
                "--wait",
                "120",
                "--concurrency",
                str(args.concurrency),
                "--requests",
                str(args.requests),
                "--json",
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode not in (0, 1):
            raise SystemExit(f"loadtest failed: {done.stderr}")
        return json.loads(done.stdout)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def in_process(work: Path, batch: int, args: argparse.Namespace) -> float:
    done = subprocess.run(
        [
            *RN50,
            "profile",
            "--out",
            str(work),
            "--runtime",
            "onnxruntime-cpu",
            "--artifact",
            ARTIFACT,
            "--batch",
            str(batch),
            "--threads",
            str(args.threads),
            "--duration",
            str(args.duration),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [r for r in json.loads(done.stdout)["rows"] if r["status"] == "ok"]
    return float(rows[0]["stats"]["throughput"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("rn50-out"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; server --threads {args.threads}, "
        f"{args.concurrency} clients × 1 image, {args.requests} requests per round, max batch {args.max_batch}"
    )
    ratios, served_ips, local_ips, p99s = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        shutil.copytree(args.out, work, ignore=shutil.ignore_patterns("triton", "*.log"))
        for r in range(args.rounds):
            report = served(work, args)
            level = report["levels"][0]
            batch = int(level["formed_batch_common"])
            local = in_process(work, batch, args)
            ratio = level["throughput"] / local
            ratios.append(ratio)
            served_ips.append(level["throughput"])
            local_ips.append(local)
            p99s.append(level["latency"]["p99_ms"])
            print(
                f"round {r + 1}: served {level['throughput']:.1f} img/s (p99 {level['latency']['p99_ms']:.1f} ms, "
                f"batches {level['batches']}, "
                f"mean {level['formed_batch_mean']:.2f}), wrong {level['wrong']}, failed {level['errors']}; "
                f"in-process at batch {batch}: "
                f"{local:.1f} img/s; ratio {ratio:.3f}",
                flush=True,
            )
            if level["wrong"] or level["errors"] or level["requests"] != args.requests:
                print("  ^ not every request was answered right")
            time.sleep(1)
    print(
        f"median: served {statistics.median(served_ips):.1f} img/s, in-process {statistics.median(local_ips):.1f} "
        "img/s, "
        f"ratio {statistics.median(ratios):.3f} (target >= 0.70), p99 {statistics.median(p99s):.1f} ms"
    )


if __name__ == "__main__":
    main()
