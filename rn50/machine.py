"""What machine a number was measured on: CPU model, cores, INT8-relevant features, GPU, clocks.

Read from /proc/cpuinfo, os and `nvidia-smi` where present; nothing here imports torch or a runtime.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

# CPU flags that decide how fast INT8 runs on x86 (ONNX Runtime's u8/s8 kernels use VNNI / AMX when present).
INT8_FLAGS = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX-512 VNNI",
    "avx_vnni": "AVX-VNNI",
    "amx_int8": "AMX-INT8",
}
GPU_QUERY = "name,compute_cap,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit"


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set[str]()
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name":
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {
        "model": model,
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "int8_features": [name for flag, name in INT8_FLAGS.items() if flag in flags],
    }


def usable_cores() -> int:
    """Cores this process may run on (affinity / container limits), not the host's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def check_threads(threads: int) -> None:
    """A thread count this machine can honour: 1 to its usable cores."""
    from rn50.errors import UsageError

    cores = usable_cores()
    if threads < 1:
        raise UsageError(f"--threads {threads} must be >= 1", fix="pass a positive thread count")
    if threads > cores:
        raise UsageError(f"--threads {threads} is more than the {cores} usable cores of this machine",
                         fix=f"pass --threads {cores} or fewer (more threads than cores only slows every runtime down)")  # fmt: skip


def parse_gpu_query(text: str) -> list[dict[str, str]]:
    """Rows of ``nvidia-smi --query-gpu=GPU_QUERY --format=csv,noheader``."""
    keys = GPU_QUERY.split(",")
    rows = []
    for line in text.strip().splitlines():
        values = [v.strip() for v in line.split(",")]
        if len(values) == len(keys):
            rows.append(dict(zip(keys, values, strict=True)))
    return rows


def gpu_info(timeout: float = 10.0) -> list[dict[str, str]]:
    """GPUs as nvidia-smi reports them (name, compute capability, driver, clocks); empty when unreadable."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        done = subprocess.run([exe, f"--query-gpu={GPU_QUERY}", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_gpu_query(done.stdout) if done.returncode == 0 else []


def describe() -> dict[str, Any]:
    return {"os": f"{platform.system()} {platform.release()}", "cpu": cpu_info(), "gpus": gpu_info()}
