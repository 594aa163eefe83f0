"""What machine a number was measured on: CPU model, cores, INT8-relevant features, GPU, clocks.

Read from /proc/cpuinfo, os and `nvidia-smi` where present; nothing here imports torch or a runtime.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from rn50.words import opt

# CPU flags that decide how INT8 runs on x86 (ONNX Runtime's and OpenVINO's u8/s8 kernels use VNNI / AMX when
# present): /proc/cpuinfo's name, what reports call it, and its name in ``cpuid_features()``.
INT8_FLAGS = {
    "avx2": ("AVX2", "AVX2"),
    "avx512f": ("AVX-512", "AVX512F"),
    "avx512_vnni": ("AVX-512 VNNI", "AVX512VNNI"),
    "avx_vnni": ("AVX-VNNI", "AVX_VNNI"),
    "amx_int8": ("AMX-INT8", "AMX_INT8"),
}
GPU_QUERY = "name,compute_cap,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit"

# The CPU's INT8 class decides whether a Q/DQ file is computed as it says, not only how fast. x86 CPUs without
# VNNI (SSE4, AVX2, AVX-512 without VNNI) multiply u8×s8 pairs into a saturating 16-bit intermediate
# (vpmaddubsw): ONNX Runtime's and OpenVINO's INT8 kernels then compute something other than a file with
# full-range 8-bit weights says (OpenVINO's docs: "Saturation (overflow) issue"). With VNNI or AMX the pairs
# are summed in 32 bits. arm64's dot products (SDOT/UDOT, or widening multiplies) do not saturate either.
VNNI, AVX2 = "vnni", "avx2"
CPU_CLASSES: dict[str, str] = {
    VNNI: "INT8 dot products summed in 32 bits (x86 with AVX-512 VNNI, AVX-VNNI or AMX; arm64)",
    AVX2: "x86 without VNNI (AVX2, AVX-512 without VNNI, SSE4): u8×s8 pairs summed in a saturating 16-bit intermediate",
}
AUTO = "auto"
CPU_CHOICES = (AUTO, *CPU_CLASSES)  # --cpu
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
X86 = ("x86_64", "amd64", "i386", "i686", "x86")


@functools.cache
def cpuid_features() -> dict[str, bool] | None:
    """The features the CPU itself reports through CPUID (what the INT8 kernels read too), or None where unknown;
    read once per process.

    /proc/cpuinfo is the host kernel's view; under an emulator (``qemu-x86_64 -cpu Haswell``, which rn50's
    tests use to run the AVX2 class's kernels on any x86 machine) only CPUID tells what the kernels will use.
    numpy's dispatcher table gives AVX2, AVX-512 and AVX-512 VNNI; AVX-VNNI and AMX-INT8, which it does not list
    (nor does py-cpuinfo), are read with the CPUID instruction itself (``_cpuid``)."""
    found: dict[str, bool] | None = None
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):
        try:
            features = getattr(__import__(module, fromlist=["__cpu_features__"]), "__cpu_features__", None)
        except ImportError:
            continue
        if isinstance(features, dict):
            found = {str(k): bool(v) for k, v in features.items()}
            break
    leaf7 = _cpuid(7, 0) if (top := _cpuid(0, 0)) is not None and top[0] >= 7 else None
    if leaf7 is not None:
        found = dict(found or {})
        found["AVX512VNNI"] = bool(leaf7[2] >> 11 & 1)  # leaf 7.0 ECX bit 11
        found["AMX_INT8"] = bool(leaf7[3] >> 25 & 1)  # leaf 7.0 EDX bit 25
        sub1 = _cpuid(7, 1) if leaf7[0] >= 1 else None
        found["AVX_VNNI"] = bool(sub1 is not None and sub1[0] >> 4 & 1)  # leaf 7.1 EAX bit 4
    return found


# x86-64 System V: cpuid(leaf=edi, subleaf=esi, out=rdx) writes EAX, EBX, ECX, EDX to out[0..3].
_CPUID_CODE = bytes.fromhex(
    "4989d0"  # mov r8, rdx
    "89f8"  # mov eax, edi
    "89f1"  # mov ecx, esi
    "53"  # push rbx (callee-saved; cpuid writes it)
    "0fa2"  # cpuid
    "418900"  # mov [r8], eax
    "41895804"  # mov [r8+4], ebx
    "41894808"  # mov [r8+8], ecx
    "4189500c"  # mov [r8+12], edx
    "5b"  # pop rbx
    "c3"  # ret
)


_CODE_PAGES: list[mmap.mmap] = []


@functools.cache
def _cpuid_function() -> Any:
    """The CPUID instruction as a callable, from a page of executable memory; None off x86-64 Linux or where the
    system forbids executable anonymous memory."""
    if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, ValueError):
        return None
    page.write(_CPUID_CODE)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    function = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32 * 4))(address)
    _CODE_PAGES.append(page)  # mapped for the life of the process, as the function is
    return function


def _cpuid(leaf: int, subleaf: int) -> tuple[int, int, int, int] | None:
    """EAX, EBX, ECX, EDX of CPUID(leaf, subleaf), or None where it cannot be executed here."""
    function = _cpuid_function()
    if function is None:
        return None
    out = (ctypes.c_uint32 * 4)()
    function(leaf, subleaf, ctypes.byref(out))
    return out[0], out[1], out[2], out[3]


def int8_class(flags: set[str], *, arch: str, cpuid: dict[str, bool] | None = None) -> str:
    """``vnni`` or ``avx2`` (``CPU_CLASSES``) from /proc/cpuinfo's ``flags`` and, where given, CPUID's view.

    CPUID decides each feature where it is known; the flags only where it is not (a fixture file, or a machine
    where CPUID cannot be read)."""
    if arch.lower() not in X86:
        return VNNI
    present = set(features(flags, cpuid))
    return VNNI if present & {INT8_FLAGS[f][0] for f in VNNI_FLAGS} else AVX2


def features(flags: set[str], cpuid: dict[str, bool] | None) -> list[str]:
    """The INT8-relevant features, by CPUID where it is known, else by the kernel's flags."""
    out = []
    for flag, (name, cpuid_name) in INT8_FLAGS.items():
        by_cpuid = cpuid.get(cpuid_name) if cpuid is not None and cpuid_name is not None else None
        if by_cpuid if by_cpuid is not None else flag in flags:
            out.append(name)
    return out


def resolve_cpu_class(choice: str) -> str:
    """--cpu: ``auto`` is this machine's class; a class name is taken as given."""
    from rn50.errors import UsageError

    if choice not in CPU_CHOICES:
        raise UsageError(
            f"unknown {opt('cpu')} {choice!r}",
            fix=f"use one of {', '.join(CPU_CHOICES)} ({AUTO}: this machine's class)",
        )
    return str(cpu_info()["int8_class"]) if choice == AUTO else choice


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, set[str]]:
    """The CPU's model name and flags, as the kernel reports them."""
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
    return model, flags


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo"), *, cpuid: dict[str, bool] | None = None) -> dict[str, Any]:
    """Model, cores, INT8 features and INT8 class; ``cpuid`` defaults to this process's CPUID view when reading
    this machine's /proc/cpuinfo (a fixture file is judged by its flags alone)."""
    model, flags = cpu_flags(cpuinfo)
    if cpuid is None and cpuinfo == Path("/proc/cpuinfo"):
        cpuid = cpuid_features()
    return {
        "model": model,
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "int8_features": features(flags, cpuid),
        "int8_class": int8_class(flags, arch=platform.machine(), cpuid=cpuid),
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
        raise UsageError(f"{opt('threads')} {threads} must be >= 1", fix="pass a positive thread count")
    if threads > cores:
        raise UsageError(
            f"{opt('threads')} {threads} is more than the {cores} usable cores of this machine",
            fix=f"pass {opt('threads')} {cores} or fewer (more threads than cores only slows every runtime down)",
        )


# Memory one 224×224 image takes while ResNet-50 runs on it, with margin: measured 12 MB (ONNX Runtime CPU) and 14 MB
# (PyTorch eager) per image of a batch of 16 over a batch of 1 (peak resident set, 2-core x86_64); parity holds a
# reference and a result besides. It grows with the pixels.
BYTES_PER_IMAGE = 24 * 2**20


def available_memory(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Bytes of memory available to start new work (the kernel's MemAvailable), or None where it cannot be read."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_batch_memory(
    batch: int, image_size: int = 224, *, flag: str = str(opt("batch")), available: int | None = None
) -> None:
    """Refuse, before allocating anything, a batch whose images and activations cannot fit in this machine's
    available memory (a MemoryError or the OOM killer later), naming the largest batch that fits."""
    from rn50.errors import UsageError

    available = available_memory() if available is None else available
    if available is None:
        return
    per_image = int(BYTES_PER_IMAGE * (image_size / 224) ** 2)
    need = batch * per_image
    if need <= available:
        return
    fits = available // per_image
    need_gib, available_gib = need / 2**30, available / 2**30
    if flag == str(opt("image_size")):
        raise UsageError(
            f"{opt('image_size')} {image_size} needs about {need_gib:.1f} GiB of memory for one image and its "
            "activations; "
            f"{available_gib:.1f} GiB is available",
            fix=f"pass a smaller {opt('image_size')} (224 is standard)",
        )
    raise UsageError(
        f"{flag} {batch} needs about {need_gib:.1f} GiB of memory ({batch} images of {image_size}×{image_size} and "
        "their "
        f"activations); {available_gib:.1f} GiB is available",
        fix=f"pass {flag} {fits} or less" if fits else "free some memory, or use a machine with more",
    )


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
        done = subprocess.run(
            [exe, f"--query-gpu={GPU_QUERY}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_gpu_query(done.stdout) if done.returncode == 0 else []


def describe() -> dict[str, Any]:
    return {"os": f"{platform.system()} {platform.release()}", "cpu": cpu_info(), "gpus": gpu_info()}
