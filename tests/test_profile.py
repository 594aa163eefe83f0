import json
import statistics
from pathlib import Path

import numpy as np
import pytest
from rn50.runtimes.profiling import ProfileReport, Row, Settings
from rn50.runtimes.timing import collect, summarize
from typer.testing import CliRunner

from rn50 import profile_report
from rn50.artifacts import Artifact, WorkDir, sha256_file
from rn50.cli import app

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
    report = ProfileReport(Settings(batches=(1,)), {"cpu": {}, "gpus": []},
                           (Row("onnxruntime-cpu", "a", "fp32", "ok", 1, stats=steady),
                            Row("onnxruntime-cpu", "b", "fp32", "ok", 1, stats=noisy)))  # fmt: skip
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


def test_profile_writes_loadable_reports_and_skips_missing_runtimes(workdir_copy: Path) -> None:
    result = cli.invoke(app, ["parity", "--out", str(workdir_copy), "--count", "4", "--runtime", "onnxruntime-cpu"])
    assert result.exit_code == 0, result.output
    args = ["profile", "--out", str(workdir_copy), "--runtime", "torch-cpu", "--runtime", "onnxruntime-cpu",
            "--runtime", "onnxruntime-cuda", "--batch", "1,2", "--warmup", "0", "--warmup-iterations", "1",
            "--iterations", "3", "--threads", "1", "--json"]  # fmt: skip
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((workdir_copy / "profile.json").read_text())
    measured = [r for r in data["rows"] if r["status"] == "ok"]
    assert {(r["runtime"], r["batch"]) for r in measured} == {("torch-cpu", 1), ("torch-cpu", 2), ("onnxruntime-cpu", 1), ("onnxruntime-cpu", 2)}
    for r in measured:
        assert r["stats"]["count"] == 3 and r["stats"]["median_ms"] > 0 and r["metric"] == "Latency"
    assert data["settings"]["threads"] == 1 and data["machine"]["threads"] == 1
    (cuda,) = [r for r in data["rows"] if r["runtime"] == "onnxruntime-cuda"]
    # No GPU build here: reported as skipped with the reason, never as a zero.
    assert cuda["status"] == "skipped" and cuda["stats"] is None and "CUDAExecutionProvider" in cuda["reason"]
    loaded = profile_report.load(workdir_copy / "profile.json")
    assert profile_report.to_dict(loaded) == data  # JSON round trip
    md = (workdir_copy / "profile.md").read_text()
    assert "| onnxruntime-cpu | onnx-fp32 | fp32 | 1 | Latency |" in md and "onnxruntime-cuda" in md
    assert "Fastest at acceptable error" in md  # parity.json was there
    assert (workdir_copy / "profile.png").read_bytes()[:4] == b"\x89PNG"


def _fake_engine(workdir: Path) -> None:
    from rn50.runtimes.trt_plan import Sidecar, sidecar_path

    engine = workdir / "resnet50.fp32.b1-32.engine"
    engine.write_bytes(b"not a real engine")
    profiles = [{"input_min": [1, 3, 224, 224], "input_opt": [8, 3, 224, 224], "input_max": [32, 3, 224, 224]}]
    Sidecar("10.13.0", "GPU", "9.0", "0" * 64, sha256_file(engine), "k", {"precision": "fp32"}, profiles, []).save(sidecar_path(engine))
    WorkDir(workdir).record(Artifact("engine-fp32", engine.name, "engine", "fp32", sha256_file(engine), None, {}, {}))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--runtime", "onnxruntime-gpu"], "unknown runtime"),
        (["--precision", "bf16"], "unknown precision"),
        (["--duration", "0"], "--duration 0"),
        (["--batch", "0"], "batch sizes must be >= 1"),
        (["--batch", "one"], "not a list of integers"),
        (["--threads", "0"], "--threads 0"),
        (["--batch", "1,64"], "outside resnet50.fp32.b1-32.engine's profile (batch 1..32)"),
    ],
)
def test_profile_bad_input_exits_2_with_one_line(workdir_copy: Path, args: list[str], needle: str) -> None:
    _fake_engine(workdir_copy)
    result = cli.invoke(app, ["profile", "--out", str(workdir_copy), *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output
    assert not (workdir_copy / "profile.json").exists()  # nothing measured, nothing written


def test_inputs_are_the_same_crops_for_every_batch() -> None:
    from rn50.runtimes.profiling import inputs

    pool = np.arange(3 * 2, dtype=np.float32).reshape(3, 2)
    assert inputs(5, pool)["input"].tolist() == [[0, 1], [2, 3], [4, 5], [0, 1], [2, 3]]
