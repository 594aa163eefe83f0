import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from tiny import TINY_ONNX
from typer.testing import CliRunner

from rn50 import feeds
from rn50.artifacts import WorkDir
from rn50.calibration import lint, qdq_tensorrt
from rn50.calibration.ranges import method_options
from rn50.calibration.table import CalibrationTable, table_for
from rn50.cli import app
from rn50.errors import UsageError

cli = CliRunner()


# The tiny net (tests/tiny.py) quantized by `rn50 quantize --int8 --fp16` (16 crops, minmax): the files' form, the
# lint, the table cache and the error paths do not depend on the model's size. ResNet-50's own INT8 quality is
# checked end to end by the README's quick start (tests/test_pipeline.py).
TRT_FILE, ORT_FILE = "tiny.int8.tensorrt.onnx", "tiny.int8.onnxruntime-cpu.onnx"


def _inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def test_tensorrt_artifact_properties(quantized_tiny: Path) -> None:
    model = onnx.load(str(quantized_tiny / TRT_FILE))
    inits = _inits(model)
    made_by = {o: n for n in model.graph.node for o in n.output}
    assert next(o.version for o in model.opset_import if o.domain == "") >= 13
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp = inits[node.input[2]]
            assert zp.dtype == np.int8 and not zp.any()  # symmetric int8
        if node.op_type == "Conv":
            wdq = made_by[node.input[1]]
            assert wdq.op_type == "DequantizeLinear" and inits[wdq.input[0]].dtype == np.int8
            axis = next(a.i for a in wdq.attribute if a.name == "axis")
            assert axis == 0 and inits[wdq.input[1]].shape == (inits[wdq.input[0]].shape[0],)  # per-channel
            assert made_by[node.input[0]].op_type == "DequantizeLinear"
            assert inits[made_by[node.input[0]].input[1]].ndim == 0  # per-tensor activation
            assert node.input[2] in inits and inits[node.input[2]].dtype == np.float32  # float bias
    assert lint.lint(model, "tensorrt") == []


def test_residual_adds_quantize_only_the_shortcut(quantized_tiny: Path) -> None:
    model = onnx.load(str(quantized_tiny / TRT_FILE))
    made_by = {o: n for n in model.graph.node for o in n.output}
    adds = [n for n in model.graph.node if n.op_type == "Add"]
    assert len(adds) == 1  # the tiny net has one residual block (ResNet-50: 16)
    for add in adds:
        kinds = sorted(made_by[i].op_type for i in add.input)
        assert kinds == ["Conv", "DequantizeLinear"], (add.name, kinds)


def test_onnxruntime_artifact_is_u8_activations_s8_weights(quantized_tiny: Path) -> None:
    model = onnx.load(str(quantized_tiny / ORT_FILE))
    assert lint.lint(model, "onnxruntime-cpu") == []
    zps = {numpy_helper.to_array(i).dtype for i in model.graph.initializer if i.name.endswith("zero_point")}
    assert np.dtype(np.uint8) in zps and np.dtype(np.int8) in zps


def _fp32(root: Path) -> onnx.ModelProto:
    return onnx.load(str(root / TINY_ONNX))


def _table(model_path: Path, ranges: dict) -> CalibrationTable:
    return CalibrationTable(ranges, "minmax", {}, "sha", "set", "", 1)


@pytest.fixture(scope="module")
def trt_model(quantized_tiny: Path) -> onnx.ModelProto:
    return onnx.load(str(quantized_tiny / TRT_FILE))


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _set_init(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    init = next(i for i in model.graph.initializer if i.name == name)
    init.CopyFrom(numpy_helper.from_array(value, name))


def test_each_lint_rule_has_a_failing_example(trt_model: onnx.ModelProto, tiny_dir: Path) -> None:
    made_by = {o: n for n in trt_model.graph.node for o in n.output}
    conv = next(n for n in trt_model.graph.node if n.op_type == "Conv")
    act_dq, w_dq = made_by[conv.input[0]], made_by[conv.input[1]]

    def rules(model: onnx.ModelProto, target: str = "tensorrt") -> set[str]:
        return {v.rule for v in lint.lint(model, target)}

    m = _copy(trt_model)
    _set_init(m, act_dq.input[2], np.array(3, np.int8))
    assert "symmetric" in rules(m)
    m = _copy(trt_model)
    _set_init(m, act_dq.input[2], np.array(0, np.uint8))
    assert "int8" in rules(m)
    m = _copy(trt_model)
    _set_init(
        m,
        w_dq.input[1],
        numpy_helper.to_array(next(i for i in m.graph.initializer if i.name == w_dq.input[1]))[:1].reshape(()),
    )
    assert "per-channel" in rules(m)
    m = _copy(trt_model)
    _set_init(m, act_dq.input[1], np.array([0.1, 0.2], np.float32))
    assert "per-tensor" in rules(m)
    m = _copy(trt_model)
    del m.opset_import[:]
    m.opset_import.extend([onnx.helper.make_opsetid("", 12)])
    assert "opset" in rules(m)
    m = _copy(trt_model)
    next(n for n in m.graph.node if n.name == conv.name).input[0] = act_dq.input[0].replace(
        "_QuantizeLinear_Output", ""
    )
    assert "quantized" in rules(m)
    assert "quantized" in rules(_fp32(tiny_dir))
    m = _copy(trt_model)
    bias = conv.input[2]
    m.graph.node.append(
        onnx.helper.make_node("DequantizeLinear", [bias + "_q", act_dq.input[1]], [bias + "_dq"], name="bias_dq")
    )
    next(n for n in m.graph.node if n.name == conv.name).input[2] = bias + "_dq"
    assert "float-bias" in rules(m)
    # residual Add: quantize the Conv branch too (both inputs) -> breaks fusion
    m = _copy(trt_model)
    made = {o: n for n in m.graph.node for o in n.output}
    add = next(n for n in m.graph.node if n.op_type == "Add")
    conv_in = next(i for i in add.input if made[i].op_type == "Conv")
    m.graph.node.append(onnx.helper.make_node("Identity", [conv_in], [conv_in + "_fake"], name="fake_dq"))
    m.graph.node[-1].op_type = "DequantizeLinear"
    add.input[list(add.input).index(conv_in)] = conv_in + "_fake"
    assert "residual-add" in rules(m)
    # ONNX Runtime target: s8 activations are refused
    assert "u8s8" in rules(trt_model, "onnxruntime-cpu")


def test_lint_runs_before_writing(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tiny
    original = qdq_tensorrt.emit

    def broken(
        model: onnx.ModelProto, table: CalibrationTable, exclude: frozenset[str] = frozenset()
    ) -> onnx.ModelProto:
        out = original(model, table, exclude)
        for i in out.graph.initializer:
            if i.name == "input_zero_point":
                i.CopyFrom(numpy_helper.from_array(np.array(5, np.int8), i.name))
        return out

    monkeypatch.setitem(__import__("rn50.calibration.quantized", fromlist=["EMITTERS"]).EMITTERS, "tensorrt", broken)
    result = cli.invoke(
        app, ["quantize", "--int8", "--target", "tensorrt", "--out", str(root), "--count", "4", "--method", "minmax"]
    )
    assert result.exit_code == 2 and "breaks a tensorrt rule" in result.output
    assert not (root / TRT_FILE).exists()


def test_calibration_cache_hit_and_invalidation(work: Path) -> None:
    workdir = WorkDir(work)
    first = table_for(workdir, feeds.samples(16, split="calibration"), method="minmax")
    assert first.reused  # the quantize fixture made the same table
    other_set = table_for(workdir, feeds.samples(8, split="calibration"), method="minmax")
    assert not other_set.reused and other_set.path != first.path
    assert table_for(workdir, feeds.samples(8, split="calibration"), method="minmax").reused
    data = json.loads(first.path.read_text())
    data["ranges"]["input"] = [0, 1]
    first.path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="was edited"):
        table_for(workdir, feeds.samples(16, split="calibration"), method="minmax")


def test_table_for_another_model_is_refused(quantized_tiny: Path) -> None:
    table = CalibrationTable.load(next((quantized_tiny / "calibration").glob("minmax-*.json")))
    with pytest.raises(UsageError, match="made for another model"):
        table.check_model("0" * 64)


@pytest.mark.parametrize(
    "method, percentile, message",
    [
        ("kl", None, "unknown calibration method"),
        ("percentile", 101.0, "out of range"),
        ("minmax", 99.0, "applies to --method percentile"),
    ],
)
def test_bad_method_options(method: str, percentile: float | None, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        method_options(method, percentile=percentile)


def test_bad_calibration_input(work: Path, tmp_path: Path) -> None:
    nan = tmp_path / "nan.npy"
    arr = np.zeros((2, 3, 224, 224), np.float32)
    arr[1, 0, 0, 0] = np.inf
    np.save(nan, arr)
    small = tmp_path / "small.npy"
    np.save(small, np.zeros((2, 3, 112, 112), np.float32))
    (tmp_path / "empty").mkdir()
    for args, message in [
        (["--arrays", str(nan)], "NaN/Inf"),
        (["--arrays", str(small)], "expected (N, 3, 224, 224)"),
        (["--images", str(tmp_path / "empty")], "no readable images"),
    ]:
        before = sorted(p.name for p in work.rglob("*"))
        result = cli.invoke(app, ["calibrate", "--out", str(work), *args])
        assert result.exit_code == 2 and message in result.output, result.output
        assert sorted(p.name for p in work.rglob("*")) == before


def test_int8_and_fp16_pass_parity_on_onnxruntime_cpu(work: Path) -> None:
    result = cli.invoke(app, ["parity", "--out", str(work), "--count", "16", "--runtime", "onnxruntime-cpu", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["artifact"]: r for r in json.loads(result.stdout)["results"]}
    assert set(rows) == {"onnx-fp32", "onnx-fp16", "onnx-int8-tensorrt", "onnx-int8-onnxruntime-cpu"}
    assert all(r["status"] == "pass" for r in rows.values())
    assert rows["onnx-fp16"]["metrics"]["cosine_min"] > 0.9999
    report = json.loads((work / "quantize-report.json").read_text())
    int8 = [r for r in report if r["precision"] == "int8"]
    assert len(int8) == 2 and all(len(r["layers_worst_first"]) == 4 for r in int8)  # 3 Conv + the classifier
    sqnr = [x["sqnr_db"] for x in int8[0]["layers_worst_first"]]
    assert sqnr == sorted(sqnr)  # worst first


def test_a_layer_outputs_error_is_the_one_compare_gives() -> None:
    """The per-layer tables read TensorError (fast on large outputs); its numbers are compare's."""
    from rn50.metrics import TensorError, compare

    rng = np.random.default_rng(3)
    ref = rng.standard_normal((6, 8, 14, 14)).astype(np.float32)
    got = ref + rng.standard_normal(ref.shape).astype(np.float32) * 0.05
    got[2] = 0.0  # one output all zero: cosine 0 there, as compare says
    fast, full = TensorError.of(got, ref), compare(got, ref)
    assert fast.sqnr_db == pytest.approx(full.sqnr_db, rel=1e-9)
    assert fast.cosine_mean == pytest.approx(full.cosine_mean, rel=1e-9)
    assert fast.max_abs == pytest.approx(full.max_abs, rel=1e-9)
    assert TensorError.of(ref, ref).sqnr_db == float("inf")
