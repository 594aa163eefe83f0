"""INT8 to an accuracy budget (rn50 quantize --int8 --budget): options, the search on a small model whose one
ruined range must be found, the artifacts and reports on the seeded ResNet-50, and the lint of Q/DQ files
written by other tools (ModelOpt's weight form, ONNX Runtime's int8 activations), built here with onnx."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tiny import activation_ranges, small_convnet
from typer.testing import CliRunner

from rn50.calibration import budget, lint, qdq_tensorrt
from rn50.calibration.table import CalibrationTable
from rn50.cli import app
from rn50.commands.options import parse_budget
from rn50.commands.quantize import QuantizeOptions
from rn50.errors import UsageError
from rn50.metrics import Thresholds

cli = CliRunner()


# --- options -------------------------------------------------------------------------------------------
def test_budget_parses_keys_as_threshold_does() -> None:
    assert parse_budget(["min_cosine_mean=0.998,min_top1=0.9"]) == Thresholds(min_cosine_mean=0.998, min_top1=0.9)
    assert parse_budget(["min_cosine=0.99", "max_abs=0.5"]) == Thresholds(min_cosine=0.99, max_abs=0.5)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("min_cosin=0.99", "unknown --budget key 'min_cosin'"),
        ("min_cosine_mean", "bad --budget 'min_cosine_mean'"),
        ("min_cosine_mean=high", "bad --budget value"),
        ("min_cosine_mean=1.5", "out of range"),
        ("min_top1=0", "out of range"),
        ("max_abs=-1", "out of range"),
        ("min_top1=0.9,min_top1=0.8", "twice"),
        ("", "empty"),
    ],
)
def test_bad_budgets_are_refused_with_the_fix(text: str, words: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_budget([text])
    assert words in e.value.problem and e.value.fix


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (QuantizeOptions(fp16=True, budget=Thresholds(min_cosine_mean=0.99)), "--budget without --int8"),
        (QuantizeOptions(int8=True, max_excluded=3), "--max-excluded without --budget"),
        (QuantizeOptions(int8=True, budget=Thresholds(min_cosine_mean=0.99), max_excluded=0), "--max-excluded 0"),
        (QuantizeOptions(int8=True, target="onnxruntime-cpu", high_precision="fp16"), "TensorRT INT8 file only"),
        (QuantizeOptions(int8=True, high_precision="bf16"), "unknown --high-precision"),
        (QuantizeOptions(int8=True, classifier="fp8"), "unknown --classifier"),
    ],
)
def test_inconsistent_options_are_refused(options: QuantizeOptions, words: str) -> None:
    with pytest.raises(UsageError) as e:
        options.check()
    assert words in e.value.problem


@pytest.mark.parametrize("args", [["--budget", "nope=1"], ["--budget", "min_cosine_mean=0.99", "--max-excluded", "0"]])
def test_cli_refuses_a_bad_budget_before_any_work(tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "never"
    r = cli.invoke(app, ["quantize", "--int8", "--out", str(out), *args])
    assert r.exit_code == 2, r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert not out.exists()


# --- the search on a small model ------------------------------------------------------------------------
def test_search_finds_the_layer_with_a_ruined_range_and_leaves_it_out() -> None:
    model = small_convnet()
    crops = np.random.default_rng(1).standard_normal((24, 3, 8, 8)).astype(np.float32)
    ranges = activation_ranges(model, crops)
    lo, hi = ranges["r0"]
    ranges["r0"] = (lo, hi * 300)  # conv1's input range 300x too wide: its activations keep ~0 levels
    table = CalibrationTable(ranges, "minmax", {}, "sha", "set", "", len(crops))

    def emit(exclude: frozenset[str]) -> onnx.ModelProto:
        proto = qdq_tensorrt.emit(model, table, exclude)
        proto.metadata_props.add(key=lint.EXCLUDED_KEY, value=json.dumps(sorted(exclude)))
        assert lint.check(proto, "tensorrt") == []  # every step is a valid TensorRT Q/DQ file
        return proto

    full = budget.Evaluator(model, crops).measure(emit(frozenset()))
    assert full.cosine_mean < 0.9  # the ruined range really hurts
    found, proto = budget.search(
        model, emit, target="tensorrt", budget=Thresholds(min_cosine_mean=0.99), max_excluded=3, crops=crops
    )
    assert [r.node for r in found.ranking][0] == "conv1"
    assert {r.node for r in found.ranking} == {"conv0", "conv1", "conv2", "fc"}
    assert found.met and found.excluded == ("conv1",)
    assert found.steps[0].output.cosine_mean == pytest.approx(full.cosine_mean)
    assert found.final.cosine_mean >= 0.99
    assert lint.excluded_of(proto) == {"conv1"}
    made_by = {o: n for n in proto.graph.node for o in n.output}
    conv1 = next(n for n in proto.graph.node if n.name == "conv1")
    assert all(
        made_by.get(i) is None or made_by[i].op_type != "DequantizeLinear" for i in conv1.input
    )  # float input and weight

    # rn50's own emitter: the classifier in float by default (recorded), in INT8 on request.
    from rn50.calibration.quantized import emitter

    assert lint.excluded_of(emitter(model, table, "tensorrt")(frozenset())) == {"fc"}
    assert "fc" in {
        n.name for n in lint.quantized_layers(emitter(model, table, "tensorrt", classifier="int8")(frozenset()))
    }

    # Already met: said so, nothing ranked, nothing left out.
    found, _ = budget.search(
        model, emit, target="tensorrt", budget=Thresholds(min_cosine_mean=0.1), max_excluded=3, crops=crops
    )
    assert found.met and found.excluded == () and found.ranking == () and "already met" in found.summary()
    # Unreachable within the limit: the search stops there and says how far it got.
    found, _ = budget.search(
        model, emit, target="tensorrt", budget=Thresholds(min_cosine=0.999999), max_excluded=1, crops=crops
    )
    assert not found.met and len(found.excluded) == 1 and "NOT met with 1 layer(s) left out" in found.summary()


def test_candidates_run_from_their_shared_cut_give_a_full_runs_numbers() -> None:
    """The search runs each candidate from the deepest tensor it shares with the base file: bit-identical logits to
    running it whole, for the ranking's one-layer-in-float files and the steps' emitted files, after a rebase too."""
    from rn50.calibration.prefix import cut_tensors

    model = small_convnet()
    crops = np.random.default_rng(1).standard_normal((24, 3, 8, 8)).astype(np.float32)
    table = CalibrationTable(activation_ranges(model, crops), "minmax", {}, "sha", "set", "", len(crops))

    def emit(exclude: set[str]) -> onnx.ModelProto:
        return qdq_tensorrt.emit(model, table, frozenset(exclude))

    def whole(m: onnx.ModelProto, count: int | None = None) -> np.ndarray:
        return budget.Evaluator.run(m, crops[:count], [])[0]

    full = emit(set())
    evaluator = budget.Evaluator(model, crops)
    evaluator.measure(full)
    evaluator.rebase(full)
    assert evaluator.prefix.cache  # cut tensors of the base, cached
    for layer in ("conv0", "conv1", "conv2", "fc"):
        variant = budget.in_float(full, model, layer)
        assert np.array_equal(evaluator.prefix.logits(variant, 16), whole(variant, 16)), layer
    assert evaluator.prefix.start(budget.in_float(full, model, "conv2")) is not None  # really run from a shared cut
    trial = emit({"conv2"})
    assert np.array_equal(evaluator.prefix.logits(trial), whole(trial))
    evaluator.rebase(trial)
    for exclude in ({"conv2", "fc"}, {"conv2", "conv0"}):
        assert np.array_equal(evaluator.prefix.logits(emit(exclude)), whole(emit(exclude))), exclude
    assert cut_tensors(model.graph) == ["c0", "r0", "c1", "r1", "c2", "r2", "pool", "flat"]


def test_cut_tensors_of_a_residual_block() -> None:
    """Inside a residual block two tensors are live (the branch and the shortcut): only the block's ends are cuts."""
    from rn50.calibration.prefix import cut_tensors

    nodes = [
        helper.make_node("Relu", ["input"], ["a"], name="a"),
        helper.make_node("Relu", ["a"], ["b"], name="b"),
        helper.make_node("Relu", ["b"], ["c"], name="c"),
        helper.make_node("Add", ["c", "a"], ["d"], name="d"),
        helper.make_node("Relu", ["d"], ["logits"], name="e"),
    ]
    graph = helper.make_graph(
        nodes,
        "residual",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1])],
    )
    assert cut_tensors(graph) == ["a", "d"]


# --- Q/DQ files from other tools ------------------------------------------------------------------------
def _qdq_model(*, weights: str, activations: type[np.integer]) -> onnx.ModelProto:
    """Conv → Relu → Conv with Q/DQ as another tool writes it: ``weights`` "modelopt" (float initializer →
    QuantizeLinear → DequantizeLinear) or "int8" (int8 initializer → DequantizeLinear); activations with a
    zero point of ``activations`` dtype."""
    rng = np.random.default_rng(0)
    inits, nodes, x = [], [], "input"
    zp = 0 if activations is np.int8 else 128
    for i in range(2):
        w = (rng.standard_normal((4, 4 if i else 3, 3, 3)) * 0.2).astype(np.float32)
        scale = (np.abs(w).reshape(4, -1).max(1) / 127).astype(np.float32)
        inits += [
            numpy_helper.from_array(np.array(0.05, np.float32), f"a{i}_s"),
            numpy_helper.from_array(np.array(zp, activations), f"a{i}_z"),
            numpy_helper.from_array(scale, f"w{i}_s"),
            numpy_helper.from_array(np.zeros(4, np.int8), f"w{i}_z"),
            numpy_helper.from_array(np.zeros(4, np.float32), f"b{i}"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", [x, f"a{i}_s", f"a{i}_z"], [f"a{i}_q"], name=f"a{i}_Q"),
            helper.make_node("DequantizeLinear", [f"a{i}_q", f"a{i}_s", f"a{i}_z"], [f"a{i}_dq"], name=f"a{i}_DQ"),
        ]
        if weights == "modelopt":
            inits.append(numpy_helper.from_array(w, f"w{i}"))
            nodes.append(
                helper.make_node("QuantizeLinear", [f"w{i}", f"w{i}_s", f"w{i}_z"], [f"w{i}_q"], name=f"w{i}_Q", axis=0)
            )
        else:
            inits.append(numpy_helper.from_array(np.round(w / scale.reshape(-1, 1, 1, 1)).astype(np.int8), f"w{i}_q"))
        nodes += [
            helper.make_node(
                "DequantizeLinear", [f"w{i}_q", f"w{i}_s", f"w{i}_z"], [f"w{i}_dq"], name=f"w{i}_DQ", axis=0
            ),
            helper.make_node("Conv", [f"a{i}_dq", f"w{i}_dq", f"b{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"),
        ]
        x = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 4, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def test_modelopt_weight_form_is_valid_for_tensorrt() -> None:
    model = _qdq_model(weights="modelopt", activations=np.int8)
    assert lint.lint(model, "tensorrt") == []  # no weight taken for a per-tensor activation
    session_out = _run(model)
    assert np.isfinite(session_out).all()


def test_int8_activations_are_a_warning_for_onnxruntime_with_the_measured_cost() -> None:
    s8 = _qdq_model(weights="int8", activations=np.int8)
    warnings = lint.check(s8, "onnxruntime-cpu")  # valid: not refused
    assert [w.rule for w in warnings] == ["u8s8"] and lint.S8_ACTIVATION_COST in warnings[0].message
    u8 = _qdq_model(weights="int8", activations=np.uint8)
    assert lint.lint(u8, "onnxruntime-cpu") == []
    assert "int8" in {v.rule for v in lint.lint(u8, "tensorrt")}  # TensorRT needs int8 zero points


def test_lint_knows_the_layers_left_out() -> None:
    model = _qdq_model(weights="int8", activations=np.int8)
    model.metadata_props.add(key=lint.EXCLUDED_KEY, value=json.dumps(["conv1"]))
    assert {(v.rule, v.node) for v in lint.lint(model, "tensorrt")} == {("excluded", "conv1")}  # recorded out, yet INT8
    conv1 = next(n for n in model.graph.node if n.name == "conv1")
    conv1.input[0], conv1.input[1] = "r0", "w1_f"
    model.graph.initializer.append(numpy_helper.from_array(np.zeros((4, 4, 3, 3), np.float32), "w1_f"))
    assert lint.lint(model, "tensorrt") == []  # left out, and float: fine; conv0 is still required INT8
    model.metadata_props[0].value = "[]"  # recorded as all INT8: the float conv1 is an error
    assert {(v.rule, v.node, v.severity) for v in lint.lint(model, "tensorrt")} == {("quantized", "conv1", "error")}
    del model.metadata_props[:]  # no record (another tool's file): a float layer is its choice, said as a warning
    assert {(v.rule, v.node, v.severity) for v in lint.lint(model, "tensorrt")} == {
        ("float-layers", "conv1", "warning")
    }
    assert lint.excluded_of(model) == {"conv1"}


def _run(model: onnx.ModelProto) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"input": np.ones((1, 3, 8, 8), np.float32)})[0])


# --- the tiny net's work directory, through rn50's commands ------------------------------------------------
SAME_TABLE = ["--count", "16", "--method", "minmax"]  # one calibration, made once and reused


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Path:
    root = Path(shutil.copytree(tiny_dir, tmp_path_factory.mktemp("budget") / "work"))
    assert cli.invoke(app, ["quantize", "--int8", "--fp16", *SAME_TABLE, "--out", str(root)]).exit_code == 0
    return root


def _table(workdir: Path) -> CalibrationTable:
    return CalibrationTable.load(next((workdir / "calibration").glob("*.json")))


def test_tensorrt_emitter_leaves_out_layers_and_their_shortcut(workdir: Path) -> None:
    fp32 = onnx.load(str(workdir / "tiny.fp32.onnx"))
    made_by = {o: n for n in fp32.graph.node for o in n.output}
    add = next(n for n in fp32.graph.node if n.op_type == "Add")
    branch = next(
        made_by[i].name
        for i in add.input
        if made_by[i].op_type == "Conv" and len([c for c in fp32.graph.node if made_by[i].input[0] in c.input]) == 1
    )
    gemm = next(n.name for n in fp32.graph.node if n.op_type == "Gemm")
    proto = qdq_tensorrt.emit(fp32, _table(workdir), frozenset({branch, gemm}))
    proto.metadata_props.add(key=lint.EXCLUDED_KEY, value=json.dumps([branch, gemm]))
    assert lint.lint(proto, "tensorrt") == []
    made = {o: n for n in proto.graph.node for o in n.output}
    out_add = next(n for n in proto.graph.node if n.name == add.name)
    assert all(made[i].op_type != "DequantizeLinear" for i in out_add.input)  # a float branch: no shortcut Q/DQ
    assert len(lint.quantized_layers(proto)) == len(lint.quantized_layers(qdq_tensorrt.emit(fp32, _table(workdir)))) - 2


def test_a_residual_add_left_out_keeps_its_shortcut_float_and_is_a_search_candidate(workdir: Path) -> None:
    """The TensorRT form's shortcut Q/DQ is a candidate of the search: left out, the Add reads its shortcut in float
    (lint-clean, recorded), the same numbers as the ranking's edit of the fully quantized file, and named by block."""
    from rn50.calibration.quantized import emitter

    fp32 = onnx.load(str(workdir / "tiny.fp32.onnx"))
    add = next(n.name for n in fp32.graph.node if n.op_type == "Add")
    emit = emitter(fp32, _table(workdir), "tensorrt")
    full = emit(frozenset())
    assert [n.name for n in budget.shortcut_adds(full)] == [add]
    assert [n.name for n in budget.candidates(full)][-1] == add  # after the Conv/Gemm layers
    left_out = emit(frozenset({add}))
    assert lint.lint(left_out, "tensorrt") == [] and add in lint.excluded_of(left_out)
    made = {o: n for n in left_out.graph.node for o in n.output}
    assert all(
        made[i].op_type != "DequantizeLinear" for i in next(n for n in left_out.graph.node if n.name == add).input
    )
    assert budget.shortcut_adds(left_out) == []
    crops = np.random.default_rng(2).standard_normal((4, 3, 224, 224)).astype(np.float32)
    np.testing.assert_array_equal(
        budget.Evaluator.run(left_out, crops, [])[0],
        budget.Evaluator.run(budget.in_float(full, fp32, add), crops, [])[0],
    )
    # A file that says the Add is left out but still quantizes its shortcut is refused.
    full.metadata_props.add(key=lint.EXCLUDED_KEY, value=json.dumps([add]))
    assert any(v.rule == "excluded" and v.node == add for v in lint.lint(full, "tensorrt"))
    # The ONNX Runtime form quantizes both Add inputs: nothing there to leave out.
    assert budget.shortcut_adds(emitter(fp32, _table(workdir), "onnxruntime-cpu")(frozenset())) == []


def test_residual_adds_are_named_by_their_block() -> None:
    from rn50.exporter.layer_names import residual_names

    conv = [helper.make_node("Conv", [f"i{k}", "w"], [f"c{k}"], name=f"n{k}") for k in range(3)]
    adds = [
        helper.make_node("Add", ["c0", "x"], ["a0"], name="identity"),
        helper.make_node("Add", ["c1", "c2"], ["a1"], name="projection"),
        helper.make_node("Add", ["x", "y"], ["a2"], name="unnamed"),
    ]
    graph = helper.make_graph([*conv, *adds], "g", [], [])
    names = {"n0": "layer1.1.conv3", "n1": "layer2.0.conv3", "n2": "layer2.0.downsample.0"}
    assert residual_names(helper.make_model(graph), names) == {"identity": "layer1.1.add", "projection": "layer2.0.add"}


def test_the_ranking_screens_every_candidate_then_ranks_the_most_sensitive_on_more_crops() -> None:
    model = small_convnet()
    crops = np.random.default_rng(1).standard_normal((16, 3, 8, 8)).astype(np.float32)
    table = CalibrationTable(activation_ranges(model, crops), "minmax", {}, "sha", "set", "", len(crops))
    full = qdq_tensorrt.emit(model, table)
    evaluator = budget.Evaluator(model, crops)
    evaluator.rebase(full)
    ranking = budget.rank(full, model, evaluator, count=8, screen=2, keep=2)
    assert [r.crops for r in ranking] == [8, 8, 2, 2]
    assert {r.node for r in ranking} == {n.name for n in budget.candidates(full)}
    assert ranking[0].cosine_mean >= ranking[1].cosine_mean and ranking[2].cosine_mean >= ranking[3].cosine_mean
    again = budget.rank(full, model, evaluator, count=8, screen=8, keep=2)  # one pass: every row on 8 crops
    assert [r.crops for r in again] == [8] * 4 and {r.node: r.cosine_mean for r in again}[ranking[0].node] == (
        ranking[0].cosine_mean
    )


def test_high_precision_fp16_runs_and_stays_close(workdir: Path) -> None:
    from rn50.calibration.budget import Evaluator
    from rn50.samples import sample_crops

    fp32 = onnx.load(str(workdir / "tiny.fp32.onnx"))
    q32 = qdq_tensorrt.emit(fp32, _table(workdir))
    q16 = qdq_tensorrt.in_fp16(q32)
    assert lint.lint(q16, "tensorrt") == []
    assert next(o.version for o in q16.opset_import if o.domain in ("", "ai.onnx")) >= qdq_tensorrt.FP16_OPSET
    types = {i.elem_type for i in (q16.graph.input[0].type.tensor_type, q16.graph.output[0].type.tensor_type)}
    assert types == {TensorProto.FLOAT}  # FP32 input and output
    scales = [i for i in q16.graph.initializer if i.name.endswith("_scale")]
    assert scales and all(i.data_type == TensorProto.FLOAT16 for i in scales)
    evaluator = Evaluator(fp32, sample_crops(8, split="evaluation"))
    a, b = evaluator.measure(q32), evaluator.measure(q16)
    assert b.cosine_mean > 0.98 and abs(a.cosine_mean - b.cosine_mean) < 0.002


def test_budget_already_met_writes_the_file_and_says_so(workdir: Path) -> None:
    r = cli.invoke(
        app,
        [
            "quantize",
            "--int8",
            "--target",
            "onnxruntime-cpu",
            "--budget",
            "min_cosine_mean=0.9",
            *SAME_TABLE,
            "--out",
            str(workdir),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "already met by the INT8 file without --budget" in " ".join(r.output.split())
    model = onnx.load(str(workdir / "tiny.int8.onnxruntime-cpu.onnx"), load_external_data=False)
    assert lint.excluded_of(model) == {budget.classifier(model)}  # the default: the classifier in float, nothing more
    report = json.loads((workdir / "quantize-report.json").read_text())
    search = report[0]["budget"]
    assert (
        search["met"]
        and search["excluded"] == []
        and len(search["steps"]) == 1
        and search["checked_on"] == budget.BUDGET_CROPS
    )
    assert "INT8 budget — onnxruntime-cpu" in (workdir / "quantize-report.md").read_text()


def test_unreachable_budget_exits_1_and_writes_nothing(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "RANK_CROPS", 2)  # the ranking's crops: only its cost changes here
    target = workdir / "tiny.int8.onnxruntime-cpu.onnx"
    before = {p.name: p.read_bytes() for p in [target, workdir / "quantize-report.json", workdir / "manifest.json"]}
    r = cli.invoke(
        app,
        [
            "quantize",
            "--int8",
            "--target",
            "onnxruntime-cpu",
            "--budget",
            "min_cosine_mean=1.0",
            "--max-excluded",
            "1",
            *SAME_TABLE,
            "--out",
            str(workdir),
        ],
    )
    assert r.exit_code == 1, r.output
    line = " ".join(r.output.split())
    assert (
        "NOT met with 1 layer(s) left out" in line and "raise --max-excluded" in line and "nothing was written" in line
    )
    assert {
        p.name: p.read_bytes() for p in [target, workdir / "quantize-report.json", workdir / "manifest.json"]
    } == before


def test_target_all_keeps_the_file_that_met_the_budget(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--target all: the TensorRT file cannot meet the budget (its search is made to fail here), the onnxruntime-cpu
    file meets it: that one is written and recorded, the other is not; exit 1 naming the one that missed."""
    real = budget.search

    def tensorrt_misses(model: onnx.ModelProto, emit: object, *, target: str, **kw: object) -> object:
        found, proto = real(model, emit, target=target, **kw)  # type: ignore[arg-type]
        if target == "tensorrt":
            from dataclasses import replace

            found = replace(found, steps=(*found.steps[:-1], replace(found.steps[-1], met=False)))
        return found, proto

    monkeypatch.setattr(budget, "search", tensorrt_misses)
    trt, ort = workdir / "tiny.int8.tensorrt.onnx", workdir / "tiny.int8.onnxruntime-cpu.onnx"
    before = trt.read_bytes() if trt.exists() else None
    ort.unlink(missing_ok=True)
    r = cli.invoke(
        app,
        [
            "quantize",
            "--int8",
            "--target",
            "all",
            "--budget",
            "min_cosine_mean=0.9",
            *SAME_TABLE,
            "--out",
            str(workdir),
        ],
    )
    assert r.exit_code == 1, r.output
    line = " ".join(r.output.split())
    assert "tensorrt:" in line and "written: onnx-int8-onnxruntime-cpu" in line, line
    assert ort.is_file() and (trt.read_bytes() if trt.exists() else None) == before
    report = json.loads((workdir / "quantize-report.json").read_text())
    assert [r["name"] for r in report] == ["onnx-int8-onnxruntime-cpu"]


def test_a_budget_search_reads_back_as_the_search_it_was_written_from() -> None:
    """quantize-report.json's search is read back into a BudgetSearch (report.md renders the type, as quantize did)."""
    import json

    import numpy as np

    from rn50.calibration.budget import BudgetSearch, Sensitivity, Step
    from rn50.metrics import Thresholds, compare
    from rn50.reports.quantize_report import RecordedSearch, budget_sections, search_dict, search_from_dict

    logits = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32)
    before, after = compare(logits * 1.1, logits), compare(logits * 1.01, logits)
    search = BudgetSearch(
        "tensorrt",
        Thresholds(min_cosine_mean=0.998),
        8,
        (Sensitivity("/conv1/Conv", "Conv", 0.999, 0.004), Sensitivity("/layer1.0/Add", "Add", 0.998, 0.001, 4)),
        (Step(None, before, False), Step("/conv1/Conv", after, True)),
        16,
        64,
        12.5,
    )
    modules = {"/conv1/Conv": "conv1", "/layer1.0/Add": "layer1.0.add"}
    back = search_from_dict(json.loads(json.dumps(search_dict(search, modules))))
    assert back == RecordedSearch(search, modules)
    assert budget_sections([back])[0].paragraphs[0] == search.summary() + "."
