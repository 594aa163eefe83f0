import json
import statistics
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rn50.artifacts import Artifact, WorkDir, sha256_file
from rn50.cli import app
from rn50.reports import profile_report
from rn50.results import profile_results
from rn50.results.profile_results import ProfileReport, Row, Settings
from rn50.runtimes.timing import collect, summarize

cli = CliRunner()


def test_statistics_on_known_samples() -> None:
    samples = [float(x) for x in range(1, 11)]  # 1..10 ms
    s = summarize(samples, batch=4)
    assert (s.min_ms, s.max_ms, s.mean_ms, s.median_ms) == (1.0, 10.0, 5.5, 5.5)
    assert s.p90_ms == pytest.approx(9.1) and s.p95_ms == pytest.approx(9.55) and s.p99_ms == pytest.approx(9.91)
    assert s.std_ms == pytest.approx(statistics.pstdev(samples))
    assert s.throughput == pytest.approx(4 * 1000 / 5.5)  # images per second from the median
    assert s.count == 10


def test_high_variation_is_flagged_and_reported() -> None:
    steady = summarize([10.0, 10.1, 9.9, 10.0], batch=1)
    noisy = summarize([10.0, 14.0, 7.0, 10.0], batch=1)
    assert not steady.unstable and steady.cv < 0.05
    assert noisy.unstable and noisy.cv > 0.05
    report = ProfileReport(
        Settings(batches=(1,)),
        {"cpu": {}, "gpus": []},
        (
            Row("onnxruntime-cpu", "a", "fp32", "ok", 1, stats=steady),
            Row("onnxruntime-cpu", "b", "fp32", "ok", 1, stats=noisy),
        ),
    )
    assert [r.artifact for r in report.unstable] == ["b"]
    md = profile_report.markdown(report)
    assert "vary by more than 5%" in md and "⚠" in md


def test_collect_warms_up_by_count_and_time_then_measures_a_fixed_duration() -> None:
    now = [0.0]
    calls: list[float] = []

    def clock() -> float:
        return now[0]

    def one() -> float:  # every call takes 0.1 s of fake time
        now[0] += 0.1
        calls.append(now[0])
        return 100.0

    samples = collect(one, warmup_s=0.5, warmup_min=2, duration_s=2.0, min_iterations=3, clock=clock)
    # 5 warm-up calls (0.5 s beats 2 calls), then 20 measured calls (2 s)
    assert len(calls) == 25 and len(samples) == 20
    exact = collect(one, warmup_s=0.0, warmup_min=4, duration_s=None, iterations=7, clock=clock)
    assert len(exact) == 7


def test_profile_writes_loadable_reports_and_skips_missing_runtimes(tiny: Path) -> None:
    result = cli.invoke(app, ["parity", "--out", str(tiny), "--count", "4", "--runtime", "onnxruntime-cpu"])
    assert result.exit_code == 0, result.output
    args = [
        "profile",
        "--out",
        str(tiny),
        "--runtime",
        "torch-cpu",
        "--runtime",
        "onnxruntime-cpu",
        "--runtime",
        "onnxruntime-cuda",
        "--batch",
        "1,2",
        "--warmup",
        "0",
        "--warmup-iterations",
        "1",
        "--iterations",
        "3",
        "--threads",
        "1",
        "--json",
    ]
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((tiny / "profile.json").read_text())
    measured = [r for r in data["rows"] if r["status"] == "ok"]
    assert {(r["runtime"], r["batch"]) for r in measured} == {
        ("torch-cpu", 1),
        ("torch-cpu", 2),
        ("onnxruntime-cpu", 1),
        ("onnxruntime-cpu", 2),
    }
    for r in measured:
        assert r["stats"]["count"] == 3 and r["stats"]["median_ms"] > 0 and r["metric"] == "Latency"
    assert data["settings"]["threads"] == 1 and data["machine"]["threads"] == 1
    (cuda,) = [r for r in data["rows"] if r["runtime"] == "onnxruntime-cuda"]
    # No GPU build here: reported as skipped with the reason, never as a zero.
    assert cuda["status"] == "skipped" and cuda["stats"] is None and "CUDAExecutionProvider" in cuda["reason"]
    loaded = profile_results.load(tiny / "profile.json")
    assert profile_results.to_dict(loaded) == data  # JSON round trip
    md = (tiny / "profile.md").read_text()
    assert "| onnxruntime-cpu · onnx-fp32 | fp32 | 1 | Latency |" in md and "onnxruntime-cuda" in md
    assert "Fastest at acceptable error" in md  # parity.json was there
    assert (tiny / "profile.png").read_bytes()[:4] == b"\x89PNG"


def _fake_engine(workdir: Path) -> None:
    from rn50.runtimes.trt_plan import Sidecar, sidecar_path

    engine = workdir / "tiny.fp32.b1-32.engine"
    engine.write_bytes(b"not a real engine")
    profiles = [{"input_min": [1, 3, 224, 224], "input_opt": [8, 3, 224, 224], "input_max": [32, 3, 224, 224]}]
    Sidecar("10.13.0", "GPU", "9.0", "0" * 64, sha256_file(engine), "k", {"precision": "fp32"}, profiles, []).save(
        sidecar_path(engine)
    )
    WorkDir(workdir).record(Artifact("engine-fp32", engine.name, "engine", "fp32", sha256_file(engine), None, {}, {}))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--runtime", "onnxruntime-gpu"], "unknown runtime"),
        (["--precision", "int4"], "unknown precision"),
        (["--duration", "0"], "--duration 0"),
        (["--batch", "0"], "batch sizes must be >= 1"),
        (["--batch", "one"], "not a list of integers"),
        (["--threads", "0"], "--threads 0"),
        (["--batch", "1,64"], "outside tiny.fp32.b1-32.engine's profile (batch 1..32)"),
    ],
)
def test_profile_bad_input_exits_2_with_one_line(tiny: Path, args: list[str], needle: str) -> None:
    _fake_engine(tiny)
    result = cli.invoke(app, ["profile", "--out", str(tiny), *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output
    assert not (tiny / "profile.json").exists()  # nothing measured, nothing written


def test_inputs_are_the_same_crops_for_every_batch() -> None:
    from rn50.evaluation.measurement import inputs

    pool = np.arange(3 * 2, dtype=np.float32).reshape(3, 2)
    assert inputs(5, pool)["input"].tolist() == [[0, 1], [2, 3], [4, 5], [0, 1], [2, 3]]


def test_gpu_rows_time_compute_and_copies_apart_and_skip_what_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU branch without a GPU: a fake runner whose device-memory seam has a fake clock and fake copy timings."""
    from rn50.errors import EnvironmentProblem
    from rn50.evaluation import measurement as profiling
    from rn50.runtimes.base import DeviceBench, Runner, TensorSpec

    class FakeGpu(Runner):
        backend = "fake"

        def activate(self) -> None:
            pass

        def input_specs(self) -> list[TensorSpec]:
            return [TensorSpec("input", "float32", (None, 3, 2, 2))]

        @property
        def device(self) -> str:
            return "FakeGPU"

        def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {"logits": np.zeros((len(feed["input"]), 10), np.float32)}

        def device_bench(self, feed: dict[str, np.ndarray], *, cuda_graph: bool) -> DeviceBench | None:
            if cuda_graph:
                raise EnvironmentProblem("no graphs on this fake", fix="pass --no-cuda-graphs")
            return DeviceBench(lambda: None, None, False, FakeMemory())  # type: ignore[arg-type]

    class FakeMemory:
        def timer(self, stream: object, enqueue: object) -> object:
            return lambda: 2.0

        def copy_times(self, feed: object, nbytes: int, stream: object) -> tuple[float, float]:
            return 0.5, 0.25

    monkeypatch.setattr(profiling, "make_runner", lambda *a, **k: FakeGpu(label="fake"))
    target = profiling.Pair("onnxruntime-cuda", "fp16", "onnx-fp16", Path("x.onnx"))
    settings = Settings(batches=(1, 2), warmup_s=0, warmup_iterations=0, duration_s=None, iterations=3, threads=1)
    rows = profiling.profile_target(target, settings, np.zeros((2, 3, 2, 2), np.float32), lambda: None, lambda m: None)
    assert [(r.batch, r.mode, r.status) for r in rows] == [
        (b, mode, status)
        for b in (1, 2)
        for mode, status in (("host", "ok"), ("device", "ok"), ("device+cuda-graph", "skipped"))
    ]
    device = rows[1]
    assert device.metric == "GPU Compute Time" and device.stats is not None and device.stats.median_ms == 2.0
    assert (device.h2d_ms, device.d2h_ms) == (0.5, 0.25) and device.device == "FakeGPU"
    assert "no graphs on this fake" in (rows[2].reason or "") and rows[2].stats is None
    assert rows[0].metric == "Latency" and rows[0].h2d_ms is None


def test_machine_description_from_cpuinfo_and_nvidia_smi(tmp_path: Path) -> None:
    from rn50.machine import cpu_info, parse_gpu_query

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Test CPU 9000\nflags\t\t: fpu avx2 avx512f avx512_vnni amx_int8\n")
    info = cpu_info(cpuinfo)
    assert info["model"] == "Test CPU 9000" and info["int8_features"] == ["AVX2", "AVX-512", "AVX-512 VNNI", "AMX-INT8"]
    (gpu,) = parse_gpu_query("NVIDIA H100 80GB HBM3, 9.0, 580.65.06, 1980 MHz, 1980 MHz, 2619 MHz, 700.00 W\n")
    assert gpu["name"] == "NVIDIA H100 80GB HBM3" and gpu["compute_cap"] == "9.0" and gpu["clocks.sm"] == "1980 MHz"
    assert parse_gpu_query("") == []


@pytest.mark.slow  # Inductor compiles C++ for the tiny net at each batch size (seconds each)
def test_compiled_pytorch_is_a_parity_target_and_a_profile_row_not_the_reference(tiny: Path) -> None:
    """torch.compile reads the PyTorch model as the reference does but is judged against it (FP32 bounds) like any
    runtime, and profiled beside it; it runs only when named (compiling takes minutes on ResNet-50)."""
    from rn50.runtimes.registry import runtime_names, spec

    assert spec("torch-compile-cpu").reference is False and "torch-compile-cpu" not in runtime_names(by_default=True)
    assert "torch-compile-cpu-default" not in runtime_names(by_default=True)
    done = cli.invoke(app, ["parity", "--out", str(tiny), "--count", "4", "--runtime", "torch-compile-cpu"])
    assert done.exit_code == 0, done.output
    (row,) = json.loads((tiny / "parity.json").read_text())["results"]
    assert (row["runtime"], row["artifact"], row["precision"], row["status"]) == (
        "torch-compile-cpu",
        "pytorch-fp32",
        "fp32",
        "pass",
    )
    assert row["metrics"]["cosine_min"] > 0.999999 and row["metrics"]["max_abs"] < 1e-3, row["metrics"]  # FP32 as FP32
    args = ["profile", "--out", str(tiny), "--runtime", "torch-cpu,torch-compile-cpu,torch-compile-cpu-default"]
    args += ["--batch", "1,2", "--warmup", "0", "--warmup-iterations", "1", "--iterations", "3", "--threads", "1"]
    done = cli.invoke(app, args)
    assert done.exit_code == 0, done.output
    rows = {(r["runtime"], r["batch"]): r for r in json.loads((tiny / "profile.json").read_text())["rows"]}
    assert {k for k, r in rows.items() if r["status"] == "ok"} == {
        ("torch-cpu", 1),
        ("torch-cpu", 2),
        ("torch-compile-cpu", 1),
        ("torch-compile-cpu", 2),
        ("torch-compile-cpu-default", 1),  # Inductor's defaults, no freezing: freezing's share can be read beside
        ("torch-compile-cpu-default", 2),
    }
    md = (tiny / "profile.md").read_text()
    assert "torch-compile-cpu" in md
