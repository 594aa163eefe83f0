"""INT8 that holds on every CPU: the CPU's INT8 class, the Q/DQ form made for it, and parity's engine check (each
INT8 runtime against its file's own semantics). Every test here passes on both kinds of CPU: where behaviour differs
by class, each class's logic is tested from fixtures, or on the real kernels of this machine with the expectation
of its own class, or under an emulated CPU without VNNI (qemu), and a deliberately wrong runner proves the check
fails where it should on any machine."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import pytest
from helpers import one_line_error
from tiny import activation_ranges, saturating_conv, small_convnet

from rn50.evaluation import comparison, pairs
from rn50.feeds import FeedSet
from rn50.machine import AVX2, VNNI, cpu_info, int8_class
from rn50.metrics import thresholds_for
from rn50.runtimes.qdq_form import QdqForm, form_of
from rn50.runtimes.registry import Pair, fidelity_deviation, saturates

if TYPE_CHECKING:
    from rn50.results.parity_results import PairResult

HERE = Path(__file__).resolve().parent
QEMU = shutil.which("qemu-x86_64")
X86 = platform.machine().lower() in ("x86_64", "amd64")


@pytest.mark.parametrize(
    ("flags", "arch", "cpuid", "expected"),
    [
        ({"sse4_1", "avx2", "fma"}, "x86_64", None, AVX2),  # AMD Zen 2/3, Intel before Cascade Lake
        ({"avx2", "avx512f", "avx512bw"}, "x86_64", None, AVX2),  # AVX-512 without VNNI (Skylake-SP) saturates too
        ({"avx2", "avx512f", "avx512_vnni"}, "x86_64", None, VNNI),
        ({"avx2", "avx_vnni"}, "x86_64", None, VNNI),  # Alder Lake: VEX-encoded VNNI, no AVX-512
        ({"avx2", "avx512f", "amx_int8"}, "x86_64", None, VNNI),
        ({"fp", "asimd", "asimddp"}, "aarch64", None, VNNI),  # arm64 dot products do not saturate
        (
            {"avx2", "avx512_vnni"},
            "x86_64",
            {"AVX512VNNI": False, "AVX2": True},
            AVX2,
        ),  # an emulated CPU: CPUID decides
        ({"avx2"}, "x86_64", {"AVX512VNNI": True, "AVX2": True}, VNNI),
    ],
)
def test_cpu_class_from_flags(flags: set[str], arch: str, cpuid: dict[str, bool] | None, expected: str) -> None:
    assert int8_class(flags, arch=arch, cpuid=cpuid) == expected


def test_cpu_class_from_a_cpuinfo_file(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: AMD EPYC 7B12\nflags\t\t: fpu sse4_1 avx2 fma\n")
    info = cpu_info(cpuinfo)
    assert info["int8_features"] == ["AVX2"]
    assert info["int8_class"] == (AVX2 if X86 else VNNI)


@pytest.mark.parametrize(
    ("bits", "expected"),
    [(8, QdqForm("uint8", 8, "onnxruntime-cpu", VNNI)), (7, QdqForm("uint8", 7, "onnxruntime-cpu", AVX2))],
)
def test_form_of_a_qdq_file(bits: int, expected: QdqForm) -> None:
    model, _ = saturating_conv(bits)
    assert form_of(model) == expected


U8_FULL = QdqForm("uint8", 8, "onnxruntime-cpu", VNNI)
U8_7BIT = QdqForm("uint8", 7, "onnxruntime-cpu", AVX2)
S8_FULL = QdqForm("int8", 8, "tensorrt", None)


@pytest.mark.parametrize(
    ("runtime", "form", "cpu_class", "expected"),
    [
        ("onnxruntime-cpu", U8_FULL, AVX2, True),
        ("onnxruntime-cpu", U8_7BIT, AVX2, False),
        ("onnxruntime-cpu", S8_FULL, AVX2, False),  # ONNX Runtime's s8/s8 path does not saturate (measured)
        ("openvino-cpu", U8_FULL, AVX2, True),
        ("openvino-cpu", S8_FULL, AVX2, True),
        ("openvino-cpu", U8_7BIT, AVX2, False),
        ("onnxruntime-cpu", U8_FULL, VNNI, False),
        ("openvino-cpu", S8_FULL, VNNI, False),
        ("onnxruntime-cuda", U8_FULL, AVX2, False),  # a GPU runtime does not run on the CPU's kernels
    ],
)
def test_which_runtimes_saturate_on_which_form(runtime: str, form: QdqForm, cpu_class: str, expected: bool) -> None:
    assert saturates(runtime, form, cpu_class) is expected


@pytest.mark.parametrize(
    ("runtime", "form", "needles"),
    [
        (
            "onnxruntime-cpu",
            U8_FULL,
            ("ONNX Runtime's u8s8 kernels saturate", "made for vnni-class CPUs", "--cpu avx2"),
        ),
        (
            "openvino-cpu",
            S8_FULL,
            ("OpenVINO's INT8 kernels saturate", "made for TensorRT", "onnxruntime-cpu file made with"),
        ),
        ("openvino-cpu", QdqForm("uint8", 8, None, None), ("saturate", "reduce_range=True")),
        ("onnxruntime-cpu", U8_7BIT, ("does not compute this file as its Q/DQ nodes say", "report it")),
    ],
)
def test_fidelity_deviation_names_the_cause_and_the_fix(runtime: str, form: QdqForm, needles: tuple[str, ...]) -> None:
    cause, fix = fidelity_deviation(runtime, form, AVX2)
    for needle in needles:
        assert needle in f"{cause} {fix}"


def _engine_check(
    tmp_path: Path, bits: int, runtimes: tuple[str, ...] = ("onnxruntime-cpu", "openvino-cpu")
) -> dict[str, PairResult]:
    """rn50's engine check of the saturating convolution on this machine's real kernels, as parity runs it."""
    model, x = saturating_conv(bits)
    path = tmp_path / f"conv{bits}.onnx"
    onnx.save(model, str(path))
    feeds = FeedSet("arrays", "crafted", x, "crafted")
    targets = [Pair(r, "int8", path.name, path, None, None, form_of(model)) for r in runtimes]
    runs, files = comparison.run_all(targets, feeds, len(x), threads=1, strict_runtimes=True, say=lambda _m: None)
    reference = comparison.semantics(path, feeds, len(x), threads=1)
    results, _ = comparison.compare_all(runs, reference, files, None, thresholds=thresholds_for)
    return {r.runtime: r for r in results}


@pytest.mark.parametrize("bits", [8, 7])
def test_engine_check_on_this_machines_kernels(tmp_path: Path, bits: int) -> None:
    """On a CPU with VNNI both files are computed as written; without VNNI the 8-bit one saturates and fails with the
    cause, the 7-bit one passes. The expectation follows this machine's class; each class is also covered below."""
    this = cpu_info()["int8_class"]
    for runtime, r in _engine_check(tmp_path, bits).items():
        assert r.fidelity is not None and r.quantization is not None, runtime
        if this == AVX2 and bits == 8:
            assert r.status == "fail" and any(f.startswith("runtime vs file") for f in r.failures), (
                runtime,
                r.failures,
            )
            assert r.cause is not None and "saturate" in r.cause and r.fix is not None and "--cpu avx2" in r.fix
        else:
            assert r.status == "pass" and r.cause is None, (runtime, r.failures)
            assert r.fidelity.cosine_min > 0.9999


@pytest.mark.skipif(
    QEMU is None or not X86,
    reason="needs qemu-x86_64 (apt install qemu-user) on an x86 machine to run a CPU without VNNI",
)
@pytest.mark.slow  # a CPU emulated instruction by instruction: seconds per file
@pytest.mark.parametrize("bits", [8, 7])
def test_engine_check_on_an_emulated_cpu_without_vnni(tmp_path: Path, bits: int) -> None:
    """rn50's engine check, run under ``qemu-x86_64 -cpu Haswell`` (AVX2 and FMA, no AVX-512, no VNNI): ONNX Runtime's
    and OpenVINO's real AVX2 kernels, whatever CPU this machine has."""
    model, x = saturating_conv(bits)
    path, feed = tmp_path / "conv.onnx", tmp_path / "x.npy"
    onnx.save(model, str(path))
    np.save(feed, x)
    done = subprocess.run(
        [str(QEMU), "-cpu", "Haswell", sys.executable, str(HERE / "engine_check.py"), str(path), str(feed)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["int8_class"] == AVX2  # rn50 reads the emulated CPU's class from CPUID
    for r in found["results"]:
        if bits == 8:
            assert r["status"] == "fail" and r["engine_cosine_mean"] < 0.99, r
            assert "saturate" in r["cause"] and "--cpu avx2" in r["fix"], r
        else:
            assert r["status"] == "pass" and r["engine_cosine_mean"] > 0.9999, r


def test_a_runtime_that_deviates_from_its_file_fails_on_any_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deliberately wrong runner (ONNX Runtime's output channels in reverse order, as a layout bug would leave them)
    fails its engine check, with the generic cause, on a CPU of either class."""
    real = comparison.make_runner

    class Perturbed:
        def __init__(self, runner: object):
            self.runner = runner

        def __enter__(self) -> Perturbed:
            self.runner.__enter__()  # type: ignore[attr-defined]
            return self

        def __exit__(self, *exc: object) -> None:
            self.runner.__exit__(*exc)  # type: ignore[attr-defined]

        @property
        def device(self) -> str:
            return "perturbed"

        def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            out = self.runner.infer(feed)  # type: ignore[attr-defined]
            return {"logits": np.ascontiguousarray(out["logits"][:, ::-1])}

    monkeypatch.setattr(comparison, "make_runner", lambda target, **kw: Perturbed(real(target, **kw)))
    (r,) = _engine_check(tmp_path, 7, runtimes=("onnxruntime-cpu",)).values()
    assert r.status == "fail" and any(f.startswith("runtime vs file") for f in r.failures)
    assert r.quantization is not None and r.quantization.max_abs == 0.0  # the file itself is fine
    assert r.cause is not None and "does not compute this file as its Q/DQ nodes say" in r.cause


@pytest.mark.parametrize(("cpu", "bits"), [(VNNI, 8), (AVX2, 7)])
def test_the_onnxruntime_cpu_file_is_made_for_its_cpu_class(cpu: str, bits: int) -> None:
    """The vnni file keeps full-range weights; the avx2 file has 7-bit weights (no u8×s8 pair past 16 bits); the
    TensorRT file is not a CPU file and records no class. Each file says so in its metadata."""
    from rn50.calibration.quantized import emitter
    from rn50.calibration.table import CalibrationTable

    model = small_convnet()
    crops = np.random.default_rng(1).standard_normal((8, 3, 8, 8)).astype(np.float32)
    table = CalibrationTable(activation_ranges(model, crops), "minmax", {}, "sha", "set", "", len(crops))
    assert form_of(emitter(model, table, "onnxruntime-cpu", cpu_class=cpu)(frozenset())) == QdqForm(
        "uint8", bits, "onnxruntime-cpu", cpu
    )
    assert form_of(emitter(model, table, "tensorrt", cpu_class=cpu)(frozenset())) == QdqForm(
        "int8", 8, "tensorrt", None
    )


def test_cpu_auto_is_this_machines_class() -> None:
    from rn50.commands.quantize import QuantizeOptions

    assert QuantizeOptions(int8=True).cpu_class == cpu_info()["int8_class"]
    assert QuantizeOptions(int8=True, cpu=AVX2).cpu_class == AVX2


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--int8", "--cpu", "sse"], "unknown --cpu 'sse'"),
        (["--fp16", "--cpu", "avx2"], "--cpu applies to the onnxruntime-cpu INT8 file only"),
        (["--int8", "--target", "tensorrt", "--cpu", "vnni"], "--cpu applies to the onnxruntime-cpu INT8 file only"),
    ],
)
def test_bad_cpu_options_are_refused_before_any_work(tmp_path: Path, args: list[str], needle: str) -> None:
    from typer.testing import CliRunner

    from rn50.cli import app

    out = tmp_path / "never"
    result = CliRunner().invoke(app, ["quantize", *args, "--out", str(out)])
    one_line_error(result, 2, needle)
    assert not out.exists()


@pytest.mark.parametrize("cpu_class", [AVX2, VNNI])
def test_the_tensorrt_file_is_not_run_by_default_where_cpu_kernels_saturate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpu_class: str
) -> None:
    """On an avx2-class CPU the default plan lists OpenVINO × rn50's TensorRT file as not run, with the reason and how
    to run it anyway (named, it runs and is judged); ONNX Runtime, whose s8/s8 path is faithful, runs it. On a
    vnni-class CPU both run. The class comes from a fixture, so both classes' plans are tested on any machine."""
    from rn50.artifacts import Artifact, WorkDir, sha256_file
    from rn50.machine import cpu_info as real_cpu_info

    pytest.importorskip("openvino", reason="openvino is not installed (pip install 'rn50[openvino]')")
    model, _ = saturating_conv(8, target="tensorrt")
    root = tmp_path / "work"
    root.mkdir()
    onnx.save(model, str(root / "resnet50.int8.tensorrt.onnx"))
    workdir = WorkDir(root)
    workdir.record(
        Artifact(
            "onnx-int8-tensorrt",
            "resnet50.int8.tensorrt.onnx",
            "onnx",
            "int8",
            sha256_file(root / "resnet50.int8.tensorrt.onnx"),
            None,
            {},
            {},
        )
    )
    monkeypatch.setattr("rn50.machine.cpu_info", lambda *a, **k: real_cpu_info(*a, **k) | {"int8_class": cpu_class})
    runtimes = ["onnxruntime-cpu", "openvino-cpu"]
    planned, skipped = pairs.parity_pairs(workdir, runtimes=runtimes)
    if cpu_class == AVX2:
        assert [t.runtime for t in planned] == ["onnxruntime-cpu"]
        (r,) = skipped
        assert (
            r.runtime == "openvino-cpu"
            and "OpenVINO's INT8 kernels saturate" in str(r.reason)
            and "--artifact onnx-int8-tensorrt" in str(r.reason)
        )
    else:
        assert [t.runtime for t in planned] == runtimes and skipped == []
    named, _ = pairs.parity_pairs(workdir, runtimes=runtimes, artifacts=["onnx-int8-tensorrt"])
    assert [t.runtime for t in named] == runtimes


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="CPUID is an x86 instruction")
def test_cpuid_read_directly_agrees_with_the_kernels_flags() -> None:
    """AVX-VNNI and AMX-INT8 are read with the CPUID instruction (numpy does not list them): natively, what it reads
    is what the kernel reports in /proc/cpuinfo, feature by feature, on a CPU of either class."""
    from rn50.machine import INT8_FLAGS, cpu_flags, cpuid_features

    _, flags = cpu_flags()
    found = cpuid_features()
    assert found is not None
    for flag in ("avx512_vnni", "avx_vnni", "amx_int8"):
        assert found[str(INT8_FLAGS[flag][1])] == (flag in flags), flag
