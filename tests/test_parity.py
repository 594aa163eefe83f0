import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import one_line_error
from onnx import helper, numpy_helper
from typer.testing import CliRunner

from rn50.cli import app
from rn50.metrics import Thresholds, compare, thresholds_for
from rn50.results import parity_results

cli = CliRunner()


def test_metrics_on_known_values() -> None:
    ref = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]], np.float32)
    got = ref.copy()
    got[0, 0] += 0.5
    m = compare(got, ref)
    assert m.max_abs == pytest.approx(0.5) and m.min_atol == m.max_abs
    assert m.max_rel == pytest.approx(0.5)
    assert m.mean_abs == pytest.approx(0.5 / 12)
    assert m.top1_agreement == 1.0 and m.top5_overlap == 1.0
    assert m.cosine_min < 1.0 and m.sqnr_db == pytest.approx(10 * np.log10((ref.astype(float) ** 2).sum() / 0.25))
    assert compare(ref, ref).sqnr_db == float("inf")
    flipped = compare(ref[::-1].copy(), ref)
    assert flipped.top1_agreement == 0.0


def test_thresholds_name_the_failing_metric() -> None:
    m = compare(np.array([[1.0, 0, 0, 0, 0]], np.float32), np.array([[0, 1.0, 0, 0, 0]], np.float32))
    failures = thresholds_for("fp16").failures(m)
    assert any(f.startswith("cosine_min") for f in failures) and any(f.startswith("top1_agreement") for f in failures)
    assert Thresholds().failures(m) == []
    assert thresholds_for("int8", min_cosine=0.5).min_cosine == 0.5


def _tampered(fp32_onnx: Path, tmp_path: Path) -> Path:
    model = onnx.load(str(fp32_onnx))
    init = next(i for i in model.graph.initializer if len(i.dims) == 4)
    w = numpy_helper.to_array(init) * 3.0
    init.CopyFrom(numpy_helper.from_array(w.astype(np.float32), init.name))
    path = tmp_path / "tampered.onnx"
    onnx.save(model, str(path))
    return path


def test_parity_cli_passes_and_writes_loadable_reports(tiny: Path) -> None:
    result = cli.invoke(app, ["parity", "--out", str(tiny), "--count", "8", "--runtime", "onnxruntime-cpu"])
    assert result.exit_code == 0, result.output
    data = json.loads((tiny / "parity.json").read_text())
    assert data["passed"] is True
    (row,) = data["results"]
    assert row["runtime"] == "onnxruntime-cpu" and row["device"] == "CPUExecutionProvider" and row["status"] == "pass"
    loaded = parity_results.load(tiny / "parity.json")
    assert parity_results.to_dict(loaded) == data  # JSON round trip
    assert "| onnxruntime-cpu · onnx-fp32 | fp32 |" in (tiny / "parity.md").read_text()
    assert (tiny / "parity.png").read_bytes()[:4] == b"\x89PNG"


def test_a_broken_artifact_fails_parity_with_the_metric_named(tiny: Path, tmp_path: Path) -> None:
    bad = _tampered(tiny / "tiny.fp32.onnx", tmp_path)
    result = cli.invoke(
        app, ["parity", "--out", str(tiny), "--count", "4", "--runtime", "onnxruntime-cpu", "--onnx", str(bad)]
    )
    assert result.exit_code == 1, result.output
    assert "tampered.onnx" in result.output and "cosine_min" in result.output
    data = json.loads((tiny / "parity.json").read_text())
    verdicts = {r["artifact"]: r["status"] for r in data["results"]}
    assert verdicts == {"onnx-fp32": "pass", "tampered.onnx": "fail"}


def test_unavailable_runtimes_are_reported_as_skipped(tiny: Path) -> None:
    result = cli.invoke(app, ["parity", "--out", str(tiny), "--count", "2", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["results"]
    assert {r["runtime"] for r in rows} >= {"onnxruntime-cpu"}
    for r in rows:
        assert r["status"] in ("pass", "skipped")
        if r["status"] == "skipped":
            assert r["reason"] and r["metrics"] is None


def _other_model(tmp_path: Path) -> Path:
    other = tmp_path / "other.onnx"
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 3, 224, 224])
    y = helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["n", 3, 224, 224])
    onnx.save(
        helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["logits"])], "g", [x], [y])),
        str(other),
    )
    return other


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--runtime", "onnxruntime-gpu"], "unknown runtime"),
        (["--threshold", "int8:cosine=0.9"], "bad --threshold"),
        (["--batch", "0"], "--batch must be >= 1"),
        (["--random", "0"], "--random must be >= 1"),
        (["--count", "0"], "--count must be >= 1"),
        (["--images", "{tmp}/empty"], "no readable images"),
        (["--artifact", "engine-int8"], "no artifact named engine-int8"),
        (
            ["--runtime", "onnxruntime-cpu", "--onnx", "{tmp}/other.onnx", "--artifact", "onnx-fp32"],
            "missing input(s) ['x']",
        ),
    ],
)
def test_parity_bad_input(tiny: Path, tmp_path: Path, args: list[str], message: str) -> None:
    _other_model(tmp_path)
    (tmp_path / "empty").mkdir()
    result = cli.invoke(app, ["parity", "--out", str(tiny), "--count", "2", *(a.format(tmp=tmp_path) for a in args)])
    one_line_error(result, 2, message)


def test_a_runtime_asked_for_but_not_here_is_listed_with_the_reason(tiny: Path) -> None:
    from rn50.runtimes.registry import unavailable_reason

    if unavailable_reason("onnxruntime-cuda") is None:
        pytest.skip("this machine has ONNX Runtime's CUDA provider: the runtime runs")
    result = cli.invoke(app, ["parity", "--out", str(tiny), "--count", "2", "--runtime", "onnxruntime-cuda", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["results"]
    assert rows and all(r["status"] == "skipped" and "CUDAExecutionProvider" in r["reason"] for r in rows)


def test_parity_needs_a_work_directory(tmp_path: Path) -> None:
    result = cli.invoke(app, ["parity", "--out", str(tmp_path / "fresh")])
    one_line_error(result, 2, "is not an rn50 work directory")
    assert not (tmp_path / "fresh").exists()


def test_the_fidelity_check_is_read_under_its_old_name_too() -> None:
    """Schema 4 names the runtime-vs-file check ``fidelity`` ("engine" is kept for TensorRT engines): a schema-3
    parity.json and ``--threshold engine:…`` are still read, as what they meant."""
    from rn50.commands.options import parse_thresholds
    from rn50.jsonio import jsonable
    from rn50.results.parity_results import SCHEMA, FeedSummary, Reference, from_dict, to_dict

    assert parse_thresholds(["engine:min_cosine=0.9"]) == parse_thresholds(["fidelity:min_cosine=0.9"])
    assert parse_thresholds(["fidelity:min_cosine=0.9"]) == {"fidelity": {"min_cosine": 0.9}}
    logits = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32)
    metrics = jsonable(compare(logits, logits * 1.01))
    row = {
        "runtime": "onnxruntime-cpu",
        "artifact": "onnx-int8-tensorrt",
        "precision": "int8",
        "path": "x.onnx",
        "status": "pass",
        "device": "cpu",
        "metrics": metrics,
        "engine": metrics,
        "engine_thresholds": "cos ≥ 0.98",
    }
    old = {
        "schema": "rn50.parity/3",
        "results": [row],
        "feeds": jsonable(FeedSummary("samples", "d", 4, "f", 0, (), False)),
        "reference": jsonable(Reference("torch-cpu", "PyTorch FP32", "cpu", None, None)),
        "machine": {},
        "created": 0.0,
    }
    report = from_dict(old)
    assert report.results[0].fidelity is not None and report.results[0].fidelity_thresholds == "cos ≥ 0.98"
    assert to_dict(report)["schema"] == SCHEMA == "rn50.parity/4" and "fidelity" in to_dict(report)["results"][0]
