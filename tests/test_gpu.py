"""The GPU paths on a real CUDA host: ONNX Runtime's CUDA provider (session, IOBinding outputs, the refusal
of a silent CPU fallback), the device-timing helpers and nvidia-smi's real output. Skipped, with the
reason, where there is no CUDA GPU or no onnxruntime-gpu; `pytest -m gpu` runs only these and the
other GPU tests. benchmarks/gpu_check.sh runs them on the device."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import numpy as np
import pytest

from rn50.metrics import DEFAULT_THRESHOLDS, compare
from rn50.samples import sample_crops

if TYPE_CHECKING:
    from pathlib import Path


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _ort_cuda() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


needs_cuda = pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU visible to torch")
needs_ort_cuda = pytest.mark.skipif(not (_cuda() and _ort_cuda()), reason="needs onnxruntime-gpu and a CUDA GPU")
pytestmark = pytest.mark.gpu


def _runner_script(model: Path, body: str) -> str:
    """A subprocess that opens ``model`` on the CUDA provider and prints the outcome (or rn50's message)."""
    return textwrap.dedent(f"""
        import sys
        {body}
        from rn50.errors import EnvironmentProblem
        from rn50.runtimes.ort_runner import OnnxRuntimeRunner
        try:
            with OnnxRuntimeRunner({str(model)!r}, provider="cuda") as r:
                print("RAN ON", r.device)
        except EnvironmentProblem as e:
            print("REFUSED", e.message)
            sys.exit(3)
    """)


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300, check=False
    )


@needs_ort_cuda
def test_cuda_provider_session_runs_on_cuda_with_rn50s_settings(fp32_onnx: Path) -> None:
    from rn50.runtimes.ort_runner import CUDA_OPTIONS, OnnxRuntimeRunner, cuda_options_for

    for precision, nhwc in (("fp32", "0"), ("fp16", "1"), ("int8", "0")):
        with OnnxRuntimeRunner(fp32_onnx, provider="cuda", cuda_options=cuda_options_for(precision)) as ort:
            assert ort.device == "CUDAExecutionProvider"
            got = ort.session.get_provider_options()["CUDAExecutionProvider"]
        assert {k: got[k] for k in CUDA_OPTIONS} == {"use_tf32": "0", "prefer_nhwc": nhwc}, precision


@needs_ort_cuda
@pytest.mark.parametrize("batch", [1, 8])
def test_iobinding_outputs_match_the_cpu_provider_within_fp32_tolerances(fp32_onnx: Path, batch: int) -> None:
    from rn50.runtimes.ort_runner import OnnxRuntimeRunner

    feed = {"input": sample_crops(batch, split="evaluation")}
    with OnnxRuntimeRunner(fp32_onnx, provider="cuda") as gpu, OnnxRuntimeRunner(fp32_onnx, provider="cpu") as cpu:
        got, want = gpu.infer(feed)["logits"], cpu.infer(feed)["logits"]
    assert got.shape == (batch, 1000) and got.dtype == np.float32
    m = compare(got, want)
    t = DEFAULT_THRESHOLDS["fp32"]
    assert m.cosine_min >= t.min_cosine and m.max_abs <= t.max_abs and m.top1_agreement >= t.min_top1, m


@needs_ort_cuda
def test_hidden_gpu_is_refused_not_run_on_the_cpu(fp32_onnx: Path) -> None:
    """With no device visible, ONNX Runtime's CUDA provider cannot start and onnxruntime retries on the CPU
    (a warning, exit 0, CPU numbers); rn50 refuses instead."""
    done = _run(_runner_script(fp32_onnx, ""), {**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 3, done.stdout + done.stderr
    assert "REFUSED ONNX Runtime fell back to CPUExecutionProvider instead of CUDAExecutionProvider" in done.stdout


@needs_ort_cuda
def test_hidden_cuda_libraries_are_refused_and_named(fp32_onnx: Path) -> None:
    """Without torch's wheels to load them (torch blocked, LD_LIBRARY_PATH empty), the CUDA provider cannot load
    its libraries; rn50 refuses and names the ones that are missing."""
    probe = _run(
        "import sys; sys.modules['torch'] = None\nimport ctypes\n"
        "from rn50.runtimes.ort_runner import GPU_LIBRARIES, missing_libraries\n"
        "print(','.join(missing_libraries(GPU_LIBRARIES['cuda'])))",
        {**os.environ, "LD_LIBRARY_PATH": ""},
    )
    missing = [m for m in probe.stdout.strip().split(",") if m]
    if probe.returncode != 0 or not missing:
        pytest.skip(
            "the CUDA libraries are loadable without torch here (system-wide), so they cannot be hidden: "
            f"{probe.stderr[-200:]}"
        )
    done = _run(_runner_script(fp32_onnx, "sys.modules['torch'] = None"), {**os.environ, "LD_LIBRARY_PATH": ""})
    assert done.returncode == 3, done.stdout + done.stderr
    assert "REFUSED ONNX Runtime fell back to CPUExecutionProvider" in done.stdout
    assert "cannot load " in done.stdout and all(m in done.stdout for m in missing)


@needs_cuda
def test_device_timer_measures_the_gpu_work_queued() -> None:
    """The CUDA-event timer times what is queued on the stream, not the host call: a GPU sleep twice as long
    measures about twice as long."""
    import torch

    from rn50.runtimes.device import TorchCuda, median_of

    cuda = TorchCuda()
    stream = cuda.stream()
    cycles = 20_000_000  # about 10 ms at 2 GHz

    def sleep(n: int) -> None:
        with torch.cuda.stream(stream):
            torch.cuda._sleep(n)

    short = median_of(cuda.timer(stream, lambda: sleep(cycles)), samples=5)
    long = median_of(cuda.timer(stream, lambda: sleep(2 * cycles)), samples=5)
    assert short > 1.0, short
    assert 1.6 < long / short < 2.4, (short, long)


@needs_cuda
def test_copy_times_and_graph_replay() -> None:
    """H2D/D2H times are positive and scale with size; a captured graph replays the work it captured."""
    import torch

    from rn50.runtimes.device import TorchCuda

    cuda = TorchCuda()
    stream = cuda.stream()
    small = {"input": np.ones((1, 3, 224, 224), np.float32)}
    big = {"input": np.ones((64, 3, 224, 224), np.float32)}
    h2d_small, d2h_small = cuda.copy_times(small, 4_000, stream)
    h2d_big, d2h_big = cuda.copy_times(big, 4_000_000, stream)
    assert 0 < h2d_small < h2d_big and 0 < d2h_small < d2h_big
    gb_s = big["input"].nbytes / (h2d_big * 1e-3) / 1e9
    assert 1 < gb_s < 1000, gb_s  # PCIe or NVLink-C2C, not a clock error

    x = cuda.to_device(np.arange(6, dtype=np.float32), stream)
    y = cuda.empty((6,), np.dtype(np.float32))

    def double() -> None:
        torch.mul(x, 2, out=y)

    replay = cuda.capture(stream, double)
    x.copy_(torch.arange(6, 12, dtype=torch.float32, device="cuda"))
    replay()
    np.testing.assert_array_equal(cuda.to_host(y, stream), np.arange(6, 12, dtype=np.float32) * 2)


@needs_ort_cuda
def test_onnxruntime_device_bench_runs_with_and_without_a_cuda_graph(fp32_onnx: Path) -> None:
    from rn50.runtimes.ort_runner import OnnxRuntimeRunner

    feed = {"input": sample_crops(2, split="evaluation")}
    with OnnxRuntimeRunner(fp32_onnx, provider="cuda") as ort:
        for graph in (False, True):
            bench = ort.device_bench(feed, cuda_graph=graph)
            assert bench is not None and bench.cuda_graph is graph
            timer = bench.memory.timer(bench.stream, bench.enqueue)
            assert all(timer() > 0 for _ in range(3))


@pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="needs nvidia-smi (an NVIDIA driver)")
def test_nvidia_smi_real_output_is_parsed() -> None:
    from rn50.machine import GPU_QUERY, gpu_info

    gpus = gpu_info()
    assert gpus, "nvidia-smi is present but rn50 read no GPU from it"
    assert set(gpus[0]) == set(GPU_QUERY.split(","))
    assert gpus[0]["name"] and gpus[0]["driver_version"][0].isdigit()
