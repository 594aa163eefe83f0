"""What rn50 serve's HTTP front costs, side by side: the same served model with the front (`--max-request-mb 32`, the
default) and without it (`--max-request-mb 0`: Triton's HTTP endpoint on the port itself), in alternating rounds.

Each round: `rn50 serve` (onnx-int8-onnxruntime-cpu, --threads T), then `rn50 loadtest --concurrency C --requests N`
over HTTP from the same machine (clients, front and server share its cores), server stopped. Medians of the rounds.
Run by hand after `rn50 pipeline` (or any work directory holding the INT8 file):
    python benchmarks/bench_http_front.py --out rn50-out --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench_serving import ARTIFACT, RN50, free_ports  # run from benchmarks/, as its siblings are


def round_of(work: Path, limit_mb: float, args: argparse.Namespace) -> list[dict]:
    http, grpc, metrics = free_ports(3)
    server = subprocess.Popen(
        [*RN50, "serve", "--out", str(work), "--artifact", ARTIFACT, "--threads", str(args.threads)]
        + ["--port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
        + ["--max-request-mb", str(limit_mb)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        done = subprocess.run(
            [*RN50, "loadtest", "--out", str(work), "--url", f"127.0.0.1:{http}", "--wait", "120"]
            + ["--concurrency", args.concurrency, "--requests", str(args.requests), "--json"],
            capture_output=True,
            text=True,
        )
        if done.returncode not in (0, 1):
            raise SystemExit(f"loadtest failed: {done.stderr}")
        return list(json.loads(done.stdout)["levels"])
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("rn50-out"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; server --threads {args.threads}, "
        f"clients {args.concurrency} × 1 image over HTTP, {args.requests} requests per level"
    )
    results: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        shutil.copytree(args.out, work, ignore=shutil.ignore_patterns("triton", "*.log"))
        for r in range(args.rounds):
            for name, limit in (("front", 32.0), ("no front", 0.0)):
                for level in round_of(work, limit, args):
                    if level["wrong"] or level["errors"]:
                        print(f"  {name}: {level['wrong']} wrong, {level['errors']} failed")
                    lat = level["latency"]
                    key = (name, int(level["concurrency"]))
                    results.setdefault(key, []).append((level["throughput"], lat["median_ms"], lat["p99_ms"]))
                    print(
                        f"round {r + 1} {name:8} {level['concurrency']} client(s): {level['throughput']:.1f} img/s, "
                        f"median {lat['median_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms",
                        flush=True,
                    )
    for concurrency in sorted({c for _, c in results}):
        line = []
        for name in ("front", "no front"):
            runs = results[(name, concurrency)]
            line.append(
                f"{name}: {statistics.median(r[0] for r in runs):.1f} img/s, median "
                f"{statistics.median(r[1] for r in runs):.2f} ms, p99 {statistics.median(r[2] for r in runs):.2f} ms"
            )
        front = statistics.median(r[0] for r in results[("front", concurrency)])
        bare = statistics.median(r[0] for r in results[("no front", concurrency)])
        print(f"{concurrency} client(s) — {'; '.join(line)}; throughput ratio {front / bare:.3f}")


if __name__ == "__main__":
    main()
