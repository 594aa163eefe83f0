"""Why a verdict fails: per-input verdicts, the layers where an input leaves the calibrated ranges, and layers named
by their PyTorch module — on the tiny net with a planted outlier."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from rn50.cli import app
from rn50.errors import UsageError
from rn50.metrics import PerInput, Thresholds, input_verdict
from rn50.results import parity_results

if TYPE_CHECKING:
    from pathlib import Path

cli = CliRunner()
OUTLIER = 5


def test_a_few_bad_inputs_are_told_from_a_general_error() -> None:
    limits = Thresholds(min_cosine=0.95, min_cosine_mean=0.985)
    names = tuple(f"img{i}" for i in range(20))
    few = input_verdict(PerInput((0.99,) * 19 + (0.5,), (0.1,) * 19 + (9.0,)), names, limits)
    assert (few.below, few.few, few.worst[0][0]) == (1, True, "img19")
    assert "1 of 20 inputs below cos 0.95 (a few: the other 19 alone have mean cos 0.9900 and pass)" in few.line()
    many = input_verdict(PerInput((0.9,) * 20, (1.0,) * 20), names, limits)
    assert (many.below, many.few) == (20, False) and "many" in many.line()
    fine = input_verdict(PerInput((0.999,) * 20, (0.01,) * 20), names, limits)
    assert fine.below == 0 and "no input below" in fine.line()


def test_module_names_are_found_from_the_weights() -> None:
    from tiny import tiny_net, tiny_onnx

    from rn50.exporter.layer_names import layer_label, module_names

    net = tiny_net()
    model = tiny_onnx(net)
    for node in model.graph.node:  # renamed as an exporter names them
        node.name = f"node_{node.op_type}_{node.name}"
    names = module_names(model, net)
    assert names == {
        "node_Conv_stem": "stem",
        "node_Conv_conv1": "conv1",
        "node_Conv_conv2": "conv2",
        "node_Gemm_fc": "fc",
    }
    assert layer_label("node_Conv_conv2", names) == "conv2 (node_Conv_conv2)"


def test_module_names_hold_through_a_folded_batchnorm() -> None:
    """A BatchNorm folded into its convolution scales each output channel (a negative scale flips it)."""
    import torch
    from torch import nn

    from rn50.exporter.layer_names import module_names

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3))
    scale = np.array([2.0, -0.5, 3.0, 0.1], np.float32)[:, None, None, None]
    inits = [
        onnx.numpy_helper.from_array(net[1].weight.detach().numpy() * scale, "w_a"),
        onnx.numpy_helper.from_array(net[0].weight.detach().numpy() * scale, "w_b"),
    ]
    nodes = [
        onnx.helper.make_node("Conv", ["x", "w_a"], ["a"], name="first"),
        onnx.helper.make_node("Conv", ["x", "w_b"], ["b"], name="second"),
    ]
    graph = onnx.helper.make_graph(nodes, "g", [], [], inits)
    assert module_names(onnx.helper.make_model(graph), net) == {"first": "1", "second": "0"}


@pytest.fixture()
def outliers(tmp_path: Path) -> Path:
    from rn50.samples import sample_crops

    crops = sample_crops(16)
    crops[OUTLIER, 0, :112] = 60.0  # a patch far brighter than anything calibration saw: clipped by INT8
    path = tmp_path / "crops.npy"
    np.save(path, crops)
    return path


def test_parity_names_the_input_and_the_layer_an_outlier_breaks(work: Path, outliers: Path) -> None:
    result = cli.invoke(
        app,
        [
            "parity",
            "--out",
            str(work),
            "--arrays",
            str(outliers),
            "--runtime",
            "onnxruntime-cpu",
            "--artifact",
            "onnx-int8-onnxruntime-cpu",
        ],
    )
    assert result.exit_code == 1, result.output
    data = json.loads((work / "parity.json").read_text())
    (row,) = data["results"]
    assert len(row["inputs"]["cosine"]) == 16 and len(row["file_inputs"]["max_abs"]) == 16  # every input's numbers
    verdict = row["input_verdict"]
    assert verdict["below"] == 1 and verdict["few"] is True and verdict["worst"][0][0] == f"crops.npy[{OUTLIER}]"
    (cause,) = row["causes"]
    assert cause["input"] == f"crops.npy[{OUTLIER}]"
    assert cause["outside"][0]["node"] == "stem" and cause["outside"][0]["ratio"] > 5  # its image: ~20× the range
    assert cause["departs"] == "stem"
    md = (work / "parity.md").read_text()
    assert "INT8: why those inputs fail, layer by layer" in md and f"crops.npy[{OUTLIER}]" in md
    assert "What would fix it" in md and "**Checked**" in md
    tried = row["tried_fix"]  # the fix offered, tried on the same 16 inputs, and said as it came out
    assert tried["keep_float"] == ["stem"] and tried["metrics"]["samples"] == 16
    assert ("— **passes**" in md) == (not tried["failures"])
    loaded = parity_results.load(work / "parity.json")
    assert parity_results.to_dict(loaded) == data  # the new fields round-trip


def test_the_head_rule() -> None:
    from rn50.metrics import resolve_head

    assert resolve_head("auto", 1000) == "classifier"  # ImageNet's classes
    assert resolve_head("auto", 768) == "embedding"  # e.g. a self-supervised model's projection
    assert resolve_head("classifier", 10) == "classifier"  # a fine-tuned classifier, said so
    with pytest.raises(UsageError, match="unknown --head 'logits'"):
        resolve_head("logits", 1000)


def test_an_embedding_is_judged_without_top1(work: Path) -> None:
    manifest = json.loads((work / "manifest.json").read_text())
    manifest["model"]["head"] = "embedding"
    (work / "manifest.json").write_text(json.dumps(manifest))
    result = cli.invoke(app, ["parity", "--out", str(work), "--count", "8", "--runtime", "onnxruntime-cpu"])
    assert result.exit_code == 0, result.output
    data = json.loads((work / "parity.json").read_text())
    assert data["head"] == "embedding"
    for row in data["results"]:
        assert row["metrics"]["top1_agreement"] is None and "top1" not in row["thresholds"]
    assert "Head: an **embedding**" in (work / "parity.md").read_text()


def test_quantize_method_auto_keeps_the_best_method_per_target(work: Path) -> None:
    result = cli.invoke(app, ["quantize", "--int8", "--method", "auto", "--count", "16", "--out", str(work), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    methods = next(item["methods"] for item in data if "methods" in item)
    manifest = json.loads((work / "manifest.json").read_text())["artifacts"]
    for target, scores in methods.items():
        assert {s["method"] for s in scores} == {"minmax", "entropy", "percentile"}
        means = [s["output"]["cosine_mean"] for s in scores]
        assert means == sorted(means, reverse=True)  # best first
        assert manifest[f"onnx-int8-{target}"]["config"]["method"] == scores[0]["method"]  # the file is the best's


@pytest.mark.parametrize("command", [["calibrate"], ["pipeline", "--skip", "profile"]])
def test_method_auto_is_quantizes_alone(work: Path, command: list[str]) -> None:
    result = cli.invoke(app, [*command, "--method", "auto", "--out", str(work)])
    assert result.exit_code == 2 and "rn50 quantize --int8 --method auto" in result.output, result.output


def _wrong_at(model_path: Path, node_name: str, out: Path) -> Path:
    """A copy of ``model_path`` whose ``node_name`` computes something else (its weights' channels reversed): a
    runtime that is wrong at that one layer."""
    model = onnx.load(str(model_path))
    node = next(n for n in model.graph.node if n.name == node_name)
    init = next(i for i in model.graph.initializer if i.name == node.input[1])
    w = onnx.numpy_helper.to_array(init)
    init.CopyFrom(onnx.numpy_helper.from_array(np.ascontiguousarray(w[::-1]), init.name))
    onnx.save(model, str(out))
    return out


@pytest.mark.parametrize("runtime", ["onnxruntime-cpu", "openvino-cpu"])
def test_the_first_layer_that_departs_is_the_wrong_one(work: Path, tmp_path: Path, runtime: str) -> None:
    if runtime == "openvino-cpu":
        pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'rn50[openvino]')")
    wrong = _wrong_at(work / "tiny.fp32.onnx", "conv2", tmp_path / "wrong.onnx")
    result = cli.invoke(
        app,
        [
            "parity",
            "--out",
            str(work),
            "--count",
            "8",
            "--runtime",
            runtime,
            "--artifact",
            "onnx-fp32",
            "--onnx",
            str(wrong),
        ],
    )
    assert result.exit_code == 1, result.output
    data = json.loads((work / "parity.json").read_text())
    rows = {r["artifact"]: r for r in data["results"]}
    assert rows["onnx-fp32"]["status"] == "pass" and rows["onnx-fp32"]["divergence"] is None
    found = rows["wrong.onnx"]["divergence"]
    assert found["first"] == "conv2", found  # not stem or conv1, which it computes right
    cosines = {layer: cos for layer, cos, _ in found["layers"]}
    assert cosines["stem"] > 0.99999 and cosines["conv1"] > 0.99999 and cosines["conv2"] < 0.99
    assert "the first layer that departs from PyTorch" in (work / "parity.md").read_text()
    assert (work / "parity-layers.png").read_bytes()[:4] == b"\x89PNG"


def test_keep_float_leaves_the_named_layers_out_of_int8(work: Path) -> None:
    result = cli.invoke(app, ["quantize", "--int8", "--keep-float", "stem", "--count", "16", "--out", str(work)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((work / "manifest.json").read_text())["artifacts"]
    for target in ("tensorrt", "onnxruntime-cpu"):
        config = manifest[f"onnx-int8-{target}"]["config"]
        assert "stem" in config["excluded"] and config["keep_float"] == ["stem"]
    bad = cli.invoke(app, ["quantize", "--int8", "--keep-float", "layer9.conv1", "--out", str(work)])
    assert bad.exit_code == 2 and "no Conv/Gemm layer or residual Add layer9.conv1 in the model" in bad.output, (
        bad.output
    )
