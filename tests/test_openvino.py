"""OpenVINO on the CPU: parity rows at an explicit inference precision, the bf16 row, IR artifacts, bad input.
These run OpenVINO itself (the `openvino` package, installed by the `dev` extra); without it they skip."""

import importlib.util
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import one_line_error
from onnx import TensorProto, helper
from tiny import TINY_ONNX, tiny_net
from typer.testing import CliRunner

from rn50.artifacts import WorkDir
from rn50.cli import app
from rn50.errors import UsageError
from rn50.machine import AVX2, cpu_info

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="openvino is not installed (pip install 'rn50[openvino]')"
)
cli = CliRunner()


@pytest.fixture(scope="module")
def ov_dir(tmp_path_factory: pytest.TempPathFactory, quantized_tiny: Path) -> Iterator[Path]:
    """The tiny net's quantized work directory with OpenVINO IR of every ONNX file (written by the CLI), the tiny
    net being rn50's PyTorch reference for the module's tests."""
    from rn50.commands.export import export_ir

    root = Path(shutil.copytree(quantized_tiny, tmp_path_factory.mktemp("ov") / "work"))
    net = tiny_net()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("rn50.weights.workdir_model", lambda _workdir: net)
        export_ir(
            WorkDir(root), ["onnx-fp32", "onnx-int8-tensorrt", "onnx-int8-onnxruntime-cpu"]
        )  # --ir of export and quantize --int8
        done = cli.invoke(app, ["quantize", "--fp16", "--ir", "--out", str(root)])  # the CLI path for the others
        assert done.exit_code == 0, done.output
        yield root


def _bf16() -> bool:
    from rn50.runtimes.openvino_runner import cpu_capabilities

    return "BF16" in cpu_capabilities()


def test_openvino_fp32_matches_pytorch_like_onnxruntime_and_bf16_is_its_own_row(ov_dir: Path) -> None:
    done = cli.invoke(
        app, ["parity", "--out", str(ov_dir), "--runtime", "openvino-cpu,openvino-cpu-bf16,onnxruntime-cpu", "--json"]
    )
    assert done.exit_code == 0, done.output
    rows = {(r["runtime"], r["artifact"]): r for r in json.loads(done.stdout)["results"]}
    for artifact in ("onnx-fp32", "ir-fp32"):
        m = rows[("openvino-cpu", artifact)]["metrics"]
        assert m["cosine_min"] >= 0.99999 and m["max_abs"] <= 1e-3, m  # as ONNX Runtime FP32 does
        assert "f32 inference precision" in rows[("openvino-cpu", artifact)]["device"]
    ort = rows[("onnxruntime-cpu", "onnx-fp32")]["metrics"]
    assert ort["cosine_min"] >= 0.99999 and ort["max_abs"] <= 1e-3
    bf16 = {k: r for k, r in rows.items() if k[0] == "openvino-cpu-bf16"}
    assert set(bf16) == {("openvino-cpu-bf16", "onnx-fp32"), ("openvino-cpu-bf16", "ir-fp32")}  # FP32 models only
    for r in bf16.values():
        assert r["precision"] == "bf16"  # judged and labelled as what ran
        if _bf16():
            assert r["status"] == "pass" and "bf16 inference precision" in r["device"], r
            f32 = rows[("openvino-cpu", r["artifact"])]["metrics"]
            assert r["metrics"]["max_abs"] > 100 * f32["max_abs"], (r["metrics"], f32)  # really bf16, not an f32 run
        else:
            assert r["status"] == "skipped" and "bf16" in r["reason"]
    for artifact in ("onnx-int8-tensorrt", "ir-int8-onnxruntime-cpu"):
        r = rows[("openvino-cpu", artifact)]
        if artifact == "onnx-int8-tensorrt" and cpu_info()["int8_class"] == AVX2:
            # OpenVINO saturates on the TensorRT file's full-range weights without VNNI: not run unless named
            assert (
                r["status"] == "skipped"
                and "saturate" in r["reason"]
                and "--artifact onnx-int8-tensorrt" in r["reason"]
            ), r
            continue
        assert r["status"] == "pass" and r["fidelity"] is not None  # against its Q/DQ file's own semantics
        assert r["fidelity"]["cosine_min"] > 0.98 and r["quantization"]["cosine_mean"] > 0.985
    md = (ov_dir / "parity.md").read_text()
    assert "| openvino-cpu-bf16 · onnx-fp32 | bf16 |" in md


def test_the_inference_precision_is_set_not_left_to_openvino(ov_dir: Path) -> None:
    """On a CPU with bf16, OpenVINO's default for an FP32 model is bf16: the runner never takes the default."""
    import openvino

    from rn50.runtimes.openvino_runner import OpenVinoRunner

    default = openvino.Core().compile_model(str(ov_dir / TINY_ONNX), "CPU")
    if _bf16():
        assert default.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"  # the silent change
    with OpenVinoRunner(ov_dir / TINY_ONNX, precision="f32", threads=1) as runner:
        assert runner.compiled("LATENCY").get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
        assert runner.compiled("THROUGHPUT").get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
        x = np.random.default_rng(0).standard_normal((3, 3, 224, 224), dtype=np.float32)
        split = runner.infer({"input": x})["logits"]  # batch > 1: split across the THROUGHPUT streams
        one = np.concatenate([runner.infer({"input": x[i : i + 1]})["logits"] for i in range(3)])
    assert split.shape == (3, 1000) and np.abs(split - one).max() < 1e-4  # the same images in the same order


def test_ir_artifacts_are_recorded_verified_and_checked(ov_dir: Path) -> None:
    manifest = json.loads((ov_dir / "manifest.json").read_text())["artifacts"]
    for name, source in (
        ("ir-fp32", "onnx-fp32"),
        ("ir-fp16", "onnx-fp16"),
        ("ir-int8-tensorrt", "onnx-int8-tensorrt"),
    ):
        ir = manifest[name]
        assert ir["kind"] == "ir" and ir["verified"] is True and ir["parent_sha256"] == manifest[source]["sha256"]
        assert ir["config"]["compress_to_fp16"] is False and ir["extra"]["verify_max_abs"] <= 1e-4
        assert manifest[name + "-weights"]["kind"] == "ir-weights"
    done = cli.invoke(app, ["verify", "--out", str(ov_dir)])
    assert done.exit_code == 0, done.output


def test_a_damaged_ir_is_refused_before_it_runs(ov_dir: Path, tmp_path: Path) -> None:
    work = Path(shutil.copytree(ov_dir, tmp_path / "work"))
    (work / "tiny.fp32.bin").write_bytes((work / "tiny.fp32.bin").read_bytes()[:1000])
    one_line_error(
        cli.invoke(app, ["parity", "--out", str(work), "--runtime", "openvino-cpu"]),
        2,
        "ir-fp32-weights",
        "rn50 export --ir",
    )


def test_openvino_itself_refuses_bad_files_in_one_line(ov_dir: Path, tmp_path: Path) -> None:
    from rn50.runtimes.openvino_runner import OpenVinoRunner

    corrupt = tmp_path / "corrupt.xml"
    corrupt.write_text("<net><layers>")
    (tmp_path / "corrupt.bin").write_bytes(b"x")
    shutil.copy(ov_dir / "tiny.fp32.xml", tmp_path / "alone.xml")  # no .bin beside it
    shutil.copy(ov_dir / "tiny.fp32.xml", tmp_path / "short.xml")
    (tmp_path / "short.bin").write_bytes((ov_dir / "tiny.fp32.bin").read_bytes()[:1000])
    node = helper.make_node("NoSuchOp", ["input"], ["logits"], name="mystery_node", domain="com.example")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)])
    (tmp_path / "unknown-op.onnx").write_bytes(model.SerializeToString())
    for name, needle in (
        ("corrupt.xml", "not valid XML"),
        ("alone.xml", "has no weights file alone.bin"),
        ("short.xml", "Incorrect weights in bin file"),
        ("unknown-op.onnx", "node mystery_node (com.example.NoSuchOp)"),
    ):
        with pytest.raises(UsageError, match=None) as e, OpenVinoRunner(tmp_path / name):
            pass
        assert needle in e.value.message and "\n" not in e.value.message, e.value.message
    # Through the CLI: an extra ONNX file OpenVINO cannot convert is one line, exit 2, the node named.
    done = cli.invoke(
        app,
        [
            "parity",
            "--out",
            str(ov_dir),
            "--runtime",
            "openvino-cpu",
            "--artifact",
            "onnx-fp32",
            "--onnx",
            str(tmp_path / "unknown-op.onnx"),
        ],
    )
    one_line_error(done, 2, "mystery_node")


def test_ir_without_openvino_is_refused_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rn50.errors import EnvironmentProblem
    from rn50.runtimes import openvino_runner

    def missing() -> None:
        raise EnvironmentProblem("openvino is not installed", fix="pip install 'rn50[openvino]'")

    monkeypatch.setattr(openvino_runner, "import_openvino", missing)
    for args in (["export", "--ir"], ["quantize", "--fp16", "--ir"]):
        one_line_error(
            cli.invoke(app, [*args, "--out", str(tmp_path / "new")]), 2, "openvino is not installed", "rn50[openvino]"
        )
        assert not (tmp_path / "new").exists()


def test_doctor_reports_openvino_and_its_bf16() -> None:
    from rn50.commands.doctor import check_openvino

    check = check_openvino()
    assert check.status == "ok" and "CPU plugin" in check.detail
    assert ("bf16: yes" in check.detail) == _bf16()
