"""rn50's whole TensorRT path — build-trt, the engine runner in parity and profile, the pipeline step, the
reports, and every refusal — executed against the TensorRT stand-in (tests/standin), on the tiny net
(tests/tiny.py): what is tested is rn50's calls and its handling of TensorRT's answers, which do not depend on
the model's size. TensorRT's own acceptance, numerics and speed need a GPU (the `trt` tests and
benchmarks/gpu_check)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import onnx
import pytest
from helpers import one_line_error
from typer.testing import CliRunner

from rn50.artifacts import Artifact, WorkDir, sha256_file
from rn50.calibration import lint
from rn50.cli import app

if TYPE_CHECKING:
    from types import ModuleType

cli = CliRunner()
STANDIN = "tensorrt-standin"


@pytest.fixture(scope="module")
def trt(trt_standin_module: ModuleType) -> ModuleType:
    return trt_standin_module


@pytest.fixture(autouse=True)
def _reset_standin(trt: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts on the stand-in's default emulated TensorRT and GPU (tests change them by monkeypatch)."""
    monkeypatch.setattr(trt.__rn50_standin__, "compute_capability", "9.0")


def invoke(*args: str) -> object:
    return cli.invoke(app, list(args))


CONVOLUTIONS = 3  # of the tiny net: the stem and the residual block's two


@pytest.fixture(scope="module")
def engines(trt: ModuleType, tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny net's work directory with its FP16 and INT8 files and FP32, FP16 and INT8 engines built by
    `rn50 build-trt` (max batch 16)."""
    root = Path(shutil.copytree(tiny_dir, tmp_path_factory.mktemp("engines") / "work"))
    result = invoke("quantize", "--int8", "--fp16", "--count", "16", "--method", "minmax", "--out", str(root))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    for flag in ([], ["--fp16"], ["--int8"]):
        result = invoke("build-trt", "--out", str(root), "--max-batch", "16", *flag)
        assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    return root


@pytest.fixture()
def copy(engines: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of ``engines``, with the tiny net as rn50's PyTorch reference (parity, profile)."""
    from tiny import tiny_net

    net = tiny_net()
    monkeypatch.setattr("rn50.weights.workdir_model", lambda _workdir: net)
    return Path(shutil.copytree(engines, tmp_path / "work"))


def _state(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _engine(root: Path, precision: str) -> Path:
    art = WorkDir(root).artifact(f"engine-{precision}")
    assert art is not None
    return root / art.path


# --- build-trt ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_trt_writes_engine_sidecar_layers_and_manifest(engines: Path, precision: str) -> None:
    art = WorkDir(engines).artifact(f"engine-{precision}")
    assert art is not None and art.kind == "engine" and art.precision == precision
    engine = engines / art.path
    sidecar = json.loads((engine.parent / (engine.name + ".json")).read_text())
    layers = json.loads((engine.parent / (engine.name + ".layers.json")).read_text())
    assert (
        sidecar["runtime"] == STANDIN
        and sidecar["tensorrt"].endswith("+standin")
        and sidecar["engine_sha256"] == sha256_file(engine)
    )
    assert art.extra["runtime"] == STANDIN and art.versions["tensorrt"] == sidecar["tensorrt"]
    assert sidecar["profiles"] == [
        {"input_min": [1, 3, 224, 224], "input_opt": [8, 3, 224, 224], "input_max": [16, 3, 224, 224]}
    ]
    onnx_art = WorkDir(engines).artifact(
        {"fp32": "onnx-fp32", "fp16": "onnx-fp16", "int8": "onnx-int8-tensorrt"}[precision]
    )
    assert onnx_art is not None and art.parent_sha256 == onnx_art.sha256
    convs = [x for x in layers["Layers"] if x["LayerType"] == "CaskConvolution"]
    assert len(convs) == CONVOLUTIONS  # every convolution, each fused with its ReLU / residual Add
    expected = {"fp32": "FP32", "fp16": "FP16", "int8": "Int8"}[precision]
    assert all(expected in c["Inputs"][0]["Format/Datatype"] for c in convs)
    assert sidecar["layers"]["int8_convolutions"] == (CONVOLUTIONS if precision == "int8" else 0)


def test_build_trt_reuses_by_key_and_rebuilds_a_damaged_engine(copy: Path) -> None:
    result = invoke("build-trt", "--out", str(copy), "--max-batch", "16")
    assert result.exit_code == 0 and "reused" in result.output, result.output  # type: ignore[attr-defined]
    assert "built by tensorrt-standin" in result.output  # type: ignore[attr-defined]
    engine = _engine(copy, "fp32")
    engine.write_bytes(engine.read_bytes()[:1000])  # truncated
    result = invoke("build-trt", "--out", str(copy), "--max-batch", "16")
    assert result.exit_code == 0 and "wrote" in result.output, result.output  # type: ignore[attr-defined]
    assert sha256_file(engine) == json.loads((engine.parent / (engine.name + ".json")).read_text())["engine_sha256"]
    result = invoke("build-trt", "--out", str(copy), "--max-batch", "32", "--json")  # another option: another engine
    assert result.exit_code == 0 and json.loads(result.stdout)["reused"] is False  # type: ignore[attr-defined]


def test_int8_check_fails_when_tensorrt_runs_one_convolution_in_float(
    trt: ModuleType, copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TensorRT's answer (the inspector) says one convolution is not INT8: the build is refused, nothing written."""
    from tensorrt import _build

    real = _build.Graph.precision
    first: list[str] = []

    def one_in_float(self: object, node: onnx.NodeProto) -> str:
        if node.op_type == "Conv" and not first:
            first.append(node.name)
        return "Float" if first and node.name == first[0] else real(self, node)  # type: ignore[arg-type]

    monkeypatch.setattr(_build.Graph, "precision", one_in_float)
    before = _state(copy)
    result = invoke("build-trt", "--out", str(copy), "--int8", "--max-batch", "64")
    one_line_error(result, 1, "INT8 engine has 1 convolutions not running in INT8", "(Float)")
    assert _state(copy) == before


def _float_weight_for_first_conv(model: onnx.ModelProto) -> str:
    """Give the first Conv its weight in float (dequantized by hand): that Conv would run in FP32."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    made_by = {o: n for n in model.graph.node for o in n.output}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    dq = made_by[conv.input[1]]
    q, scale = numpy_helper.to_array(inits[dq.input[0]]), numpy_helper.to_array(inits[dq.input[1]])
    w = (q.astype("float32") * scale.reshape(-1, *([1] * (q.ndim - 1)))).astype("float32")
    model.graph.initializer.append(numpy_helper.from_array(w, "float_weight"))
    conv.input[1] = "float_weight"
    return conv.name


def test_int8_onnx_with_a_float_convolution_is_refused_before_the_parser(copy: Path) -> None:
    path = copy / "tiny.int8.tensorrt.onnx"
    model = onnx.load(str(path))
    conv = _float_weight_for_first_conv(model)
    onnx.save(model, str(path))
    WorkDir(copy).record(_rehash(WorkDir(copy), "onnx-int8-tensorrt", path))
    before = _state(copy)
    result = invoke("build-trt", "--out", str(copy), "--int8", "--max-batch", "64")
    one_line_error(result, 2, "breaks a tensorrt rule", f"[quantized] {conv}")
    assert _state(copy) == before


def _rehash(workdir: WorkDir, name: str, path: Path) -> Artifact:
    from dataclasses import replace

    art = workdir.artifact(name)
    assert art is not None
    return replace(art, sha256=sha256_file(path))


def test_an_int8_file_with_its_residual_add_left_out_builds_and_keeps_the_add_float(copy: Path) -> None:
    """What --budget may leave out on the TensorRT form, a residual Add (its shortcut float), given by hand: the file
    is recorded and lint-clean, and TensorRT (here the stand-in) builds it with every convolution still INT8."""
    result = invoke(
        "quantize", "--int8", "--target", "tensorrt", "--count", "16", "--method", "minmax", "--keep-float", "add",
        "--out", str(copy),
    )  # fmt: skip
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    model = onnx.load(str(copy / "tiny.int8.tensorrt.onnx"))
    assert lint.excluded_of(model) == {"add", "fc"}
    made_by = {o: n.op_type for n in model.graph.node for o in n.output}
    assert [made_by.get(i) for i in next(n for n in model.graph.node if n.name == "add").input] == ["Relu", "Conv"]
    result = invoke("build-trt", "--out", str(copy), "--int8", "--max-batch", "16")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]


# --- parity, profile, pipeline ------------------------------------------------------------------------
def test_parity_runs_engines_against_pytorch_and_int8_against_its_file(copy: Path) -> None:
    result = invoke("parity", "--out", str(copy), "--runtime", "tensorrt", "--count", "8", "--json")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    rows = {r["artifact"]: r for r in json.loads(result.stdout)["results"]}  # type: ignore[attr-defined]
    assert set(rows) == {"engine-fp32", "engine-fp16", "engine-int8"}
    for r in rows.values():
        assert (
            r["runtime"] == STANDIN
            and r["status"] == "pass"
            and "stand-in" in r["device"]
            and "not TensorRT" in r["device"]
        )
    assert rows["engine-fp32"]["metrics"]["cosine_min"] > 0.99999
    engine = rows["engine-int8"]["fidelity"]  # against the semantics of the Q/DQ file the engine was built from
    assert (
        engine is not None
        and engine["cosine_min"] > 0.98
        and rows["engine-int8"]["semantics_file"].endswith(".int8.tensorrt.onnx")
    )
    md = (copy / "parity.md").read_text()
    assert "rn50's TensorRT stand-in" in md and "| tensorrt |" not in md and "tensorrt · " not in md


def test_parity_refuses_a_batch_outside_the_engine_profile(copy: Path) -> None:
    result = invoke(
        "parity",
        "--out",
        str(copy),
        "--runtime",
        "tensorrt",
        "--artifact",
        "engine-fp32",
        "--random",
        "20",
        "--batch",
        "20",
    )
    one_line_error(result, 2, "outside the engine's profile (batch 1..16)", "rn50 build-trt --min-batch/--max-batch")


def test_profile_times_engines_through_the_device_seam(trt: ModuleType, copy: Path) -> None:
    assert invoke("parity", "--out", str(copy), "--runtime", "tensorrt", "--count", "8").exit_code == 0  # type: ignore[attr-defined]
    captures = trt.__rn50_standin__.captures
    result = invoke(
        "profile",
        "--out",
        str(copy),
        "--runtime",
        "tensorrt",
        "--batch",
        "1,2",
        "--warmup",
        "0",
        "--warmup-iterations",
        "1",
        "--iterations",
        "2",
        "--json",
    )
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    rows = json.loads(result.stdout)["rows"]  # type: ignore[attr-defined]
    got = {(r["artifact"], r["batch"], r["mode"]) for r in rows if r["status"] == "ok"}
    assert got == {
        (a, b, m)
        for a in ("engine-fp32", "engine-fp16", "engine-int8")
        for b in (1, 2)
        for m in ("host", "device", "device+cuda-graph")
    }
    assert all(r["runtime"] == STANDIN for r in rows)
    device = [r for r in rows if r["mode"] != "host"]
    assert all(r["h2d_ms"] is not None and r["d2h_ms"] is not None and r["stats"]["count"] == 2 for r in device)
    assert trt.__rn50_standin__.captures == captures + 6  # one graph per engine and batch
    md = (copy / "profile.md").read_text()
    assert "rn50's TensorRT stand-in" in md and "- batch 1: **tensorrt-standin" not in md
    from rn50.reports import profile_report
    from rn50.results import profile_results

    verdicts = profile_report.parity_verdicts(copy / "parity.json")
    assert verdicts and all(v.get("status") == "pass" for v in verdicts.values()), verdicts
    report = profile_results.load(copy / "profile.json")
    assert profile_report.fastest(report, verdicts, 1) is None  # parity passed, but a stand-in is never "fastest"


def test_pipeline_build_trt_step_and_report(copy: Path) -> None:
    result = invoke(
        "pipeline", "--out", str(copy), "--only", "build-trt", "--only", "parity", "--parity-count", "8", "--json"
    )
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    steps = {s["name"]: s for s in json.loads(result.stdout)["steps"]}  # type: ignore[attr-defined]
    assert steps["build-trt"]["status"] in ("ran", "reused") and "tensorrt-standin" in steps["build-trt"]["detail"]
    report = (copy / "report.md").read_text()
    assert "rn50's TensorRT stand-in" in report and "tensorrt-standin" in report
    assert "| tensorrt |" not in report
    html = (copy / "report.html").read_text()
    assert "rn50&#x27;s TensorRT stand-in" in html or "rn50's TensorRT stand-in" in html


def test_doctor_says_the_standin_is_not_tensorrt() -> None:
    result = invoke("doctor", "--json")
    check = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "tensorrt")  # type: ignore[attr-defined]
    assert check["status"] == "missing" and "stand-in" in check["detail"]


# --- refusals: one line, exit 2, nothing deleted or half-written --------------------------------------
def _parity_engine(root: Path) -> object:
    return invoke("parity", "--out", str(root), "--runtime", "tensorrt", "--artifact", "engine-fp16", "--count", "8")


def test_engine_from_another_tensorrt_is_refused(trt: ModuleType, copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trt, "__version__", "10.14.1.48")
    before = _state(copy)
    one_line_error(
        _parity_engine(copy),
        2,
        "built with TensorRT 10.13.0.35+standin; this machine has 10.14.1.48+standin",
        "rn50 build-trt --fp16",
    )
    assert _state(copy) == before


def test_engine_for_another_gpu_is_refused(trt: ModuleType, copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trt.__rn50_standin__, "compute_capability", "8.9")
    before = _state(copy)
    one_line_error(
        _parity_engine(copy), 2, "built for compute capability 9.0", "this GPU is 8.9", "rn50 build-trt --fp16"
    )
    assert _state(copy) == before


def test_truncated_engine_missing_or_edited_sidecar_are_refused(copy: Path) -> None:
    engine = _engine(copy, "fp16")
    sidecar = engine.parent / (engine.name + ".json")
    good_engine, good_sidecar = engine.read_bytes(), sidecar.read_text()
    cases = [
        (
            lambda: engine.write_bytes(good_engine[: len(good_engine) // 2]),
            "changed since it was made",
        ),  # the manifest sees it first
        (lambda: sidecar.unlink(), "is missing"),
        (
            lambda: sidecar.write_text(
                good_sidecar.replace('"compute_capability": "9.0"', '"compute_capability": "8.9"')
            ),
            "was edited",
        ),
        (lambda: sidecar.write_text('{"schema": "rn50.engine/1", "tensorrt": 10}'), "is not an rn50 engine sidecar"),
        (
            lambda: sidecar.write_text(
                good_sidecar.replace('"gpu": "', '"gpu": ["').replace('(host memory)"', '(host memory)"]')
            ),
            "wrong types in gpu",
        ),
    ]
    for damage, message in cases:
        engine.write_bytes(good_engine)
        sidecar.write_text(good_sidecar)
        damage()
        before = _state(copy)
        one_line_error(_parity_engine(copy), 2, message, "rn50 build-trt")
        assert _state(copy) == before


def test_engine_tensorrt_cannot_load_is_refused_with_its_reason(trt: ModuleType, copy: Path) -> None:
    """A plan that passes rn50's checks but that TensorRT itself refuses (here: an edited plan whose
    sidecar was re-hashed) gets TensorRT's own reason, in one line."""
    engine = _engine(copy, "fp32")
    sidecar_path = engine.parent / (engine.name + ".json")
    engine.write_bytes(b"garbage" + engine.read_bytes()[7:])
    sidecar = json.loads(sidecar_path.read_text())
    sidecar["engine_sha256"] = sha256_file(engine)
    sidecar_path.write_text(json.dumps(sidecar))
    WorkDir(copy).record(_rehash(WorkDir(copy), "engine-fp32", engine))
    result = invoke("parity", "--out", str(copy), "--runtime", "tensorrt", "--artifact", "engine-fp32", "--count", "8")
    one_line_error(result, 2, "TensorRT could not load", "Magic tag does not match", "rn50 build-trt")


def test_onnx_the_parser_rejects_is_refused(copy: Path) -> None:
    path = copy / "tiny.fp32.onnx"
    model = onnx.load(str(path))
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.op_type = "Celu"  # valid ONNX, no TensorRT importer in the stand-in
    onnx.save(model, str(path))
    WorkDir(copy).record(_rehash(WorkDir(copy), "onnx-fp32", path))
    before = _state(copy)
    result = invoke("build-trt", "--out", str(copy), "--max-batch", "64")
    one_line_error(
        result,
        2,
        "TensorRT's ONNX parser rejected tiny.fp32.onnx",
        f"node {relu.name} (Celu)",
        "No importer registered for op: Celu",
        "rn50 build-trt",
    )
    assert _state(copy) == before


def test_failed_build_says_what_tensorrt_said_and_writes_nothing(copy: Path) -> None:
    before = _state(copy)
    result = invoke("build-trt", "--out", str(copy), "--workspace", "1", "--max-batch", "64")
    one_line_error(result, 1, "TensorRT could not build the engine", "insufficient workspace", "--workspace")
    assert _state(copy) == before


def test_stale_timing_cache_is_replaced_not_fatal(trt: ModuleType, copy: Path) -> None:
    cache = next(copy.glob("timing-trt*.cache"))
    cache.write_bytes(cache.read_bytes().replace(b'"cc": "9.0"', b'"cc": "8.6"'))  # made on another GPU
    result = invoke("--verbose", "build-trt", "--out", str(copy), "--opt-level", "2", "--max-batch", "16")
    assert result.exit_code == 0 and "does not match this TensorRT or GPU" in result.output, result.output  # type: ignore[attr-defined]


def test_no_gpu_for_tensorrt_fails_fast(trt: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(type(trt.__rn50_standin__.device), "unavailable", lambda self: "no CUDA GPU visible to torch")
    result = invoke("build-trt", "--out", str(tmp_path / "new"))
    one_line_error(result, 2, "TensorRT needs a CUDA GPU: no CUDA GPU visible to torch")
    assert not (tmp_path / "new").exists()


def test_compatible_engines_load_where_their_build_options_allow(
    trt: ModuleType, copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--hardware-compat ampere-plus and --version-compat reach TensorRT, and rn50 and TensorRT then agree on
    where the engine may run: another Ampere+ GPU and a later 10.x, but not an older GPU."""
    result = invoke(
        "build-trt",
        "--out",
        str(copy),
        "--fp16",
        "--max-batch",
        "16",
        "--hardware-compat",
        "ampere-plus",
        "--version-compat",
    )
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    monkeypatch.setattr(trt.__rn50_standin__, "compute_capability", "8.6")
    monkeypatch.setattr(trt, "__version__", "10.14.1.48")
    assert _parity_engine(copy).exit_code == 0  # type: ignore[attr-defined]
    monkeypatch.setattr(trt.__rn50_standin__, "compute_capability", "7.5")
    one_line_error(_parity_engine(copy), 2, "compute capability", "this GPU is 7.5")
    result = invoke(
        "build-trt", "--out", str(copy), "--max-batch", "16", "--hardware-compat", "same-compute-capability"
    )
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]


def test_real_tensorrt_engines_and_standin_engines_never_mix(copy: Path) -> None:
    engine = _engine(copy, "fp16")
    sidecar_path = engine.parent / (engine.name + ".json")
    sidecar = json.loads(sidecar_path.read_text())
    sidecar["runtime"] = "tensorrt"  # as if a real TensorRT had built it
    sidecar_path.write_text(json.dumps(sidecar))
    one_line_error(_parity_engine(copy), 2, "the engine was built by tensorrt; this machine runs tensorrt-standin")


def test_unreadable_sidecar_makes_build_trt_rebuild(copy: Path) -> None:
    engine = _engine(copy, "fp32")
    (engine.parent / (engine.name + ".json")).write_text("{not json")
    result = invoke("--verbose", "build-trt", "--out", str(copy), "--max-batch", "16")
    assert result.exit_code == 0 and "wrote" in result.output and "rebuilding" in result.output, result.output  # type: ignore[attr-defined]


def test_runner_refuses_a_missing_engine_or_one_its_sidecar_does_not_describe(copy: Path, tmp_path: Path) -> None:
    """The runner's own checks, for an engine used outside a work directory's manifest."""
    from rn50.errors import UsageError
    from rn50.runtimes.trt_runner import TensorRTRunner

    with pytest.raises(UsageError, match="engine not found"), TensorRTRunner(tmp_path / "none.engine"):
        pass
    engine = _engine(copy, "fp32")
    engine.write_bytes(engine.read_bytes()[:-100])
    with pytest.raises(UsageError, match=r"does not match its sidecar .*truncated or replaced"), TensorRTRunner(engine):
        pass


def test_int8_engine_with_layers_left_out_of_int8(trt: ModuleType, copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Q/DQ file from `quantize --budget`: the INT8 check requires its excluded convolutions not INT8 and
    every other one INT8 — from TensorRT's answer (the inspector), not from the file."""
    from tensorrt import _build

    from rn50.calibration import lint
    from rn50.calibration.quantized import emitter
    from rn50.calibration.table import CalibrationTable

    fp32 = onnx.load(str(copy / "tiny.fp32.onnx"))
    conv = next(n.name for n in fp32.graph.node if n.op_type == "Conv")
    table = CalibrationTable.load(next((copy / "calibration").glob("*.json")))
    path = copy / "tiny.int8.tensorrt.onnx"
    onnx.save(emitter(fp32, table, "tensorrt")(frozenset({conv})), str(path))
    WorkDir(copy).record(_rehash(WorkDir(copy), "onnx-int8-tensorrt", path))
    before = _state(copy)

    real = _build.Graph.precision
    monkeypatch.setattr(_build.Graph, "precision", lambda self, node: "Int8" if node.name == conv else real(self, node))
    result = invoke("build-trt", "--out", str(copy), "--int8", "--max-batch", "64")
    one_line_error(result, 1, "runs 1 convolution(s) in INT8 that the Q/DQ file left out of INT8", conv)
    assert _state(copy) == before

    monkeypatch.setattr(_build.Graph, "precision", real)
    result = invoke("build-trt", "--out", str(copy), "--int8", "--max-batch", "64")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    layers = json.loads((_engine(copy, "int8").parent / (_engine(copy, "int8").name + ".json")).read_text())["layers"]
    excluded = lint.excluded_of(onnx.load(str(path), load_external_data=False))
    assert conv in excluded and layers["convolution_nodes"][conv] == "Float"
    assert all((dtype == "Int8") == (node not in excluded) for node, dtype in layers["convolution_nodes"].items())


def _modelopt_form(model: onnx.ModelProto) -> onnx.ModelProto:
    """rn50's TensorRT Q/DQ file rewritten with weights as ModelOpt writes them: float initializer →
    QuantizeLinear → DequantizeLinear (the metadata dropped: a file from another tool)."""
    from onnx import helper, numpy_helper

    from rn50.onnx_graph import toposort

    inits = {i.name: i for i in model.graph.initializer}
    for dq in [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]:
        q, scale = numpy_helper.to_array(inits[dq.input[0]]), numpy_helper.to_array(inits[dq.input[1]])
        w = (q.astype("float32") * scale.reshape(-1, *([1] * (q.ndim - 1)))).astype("float32")
        model.graph.initializer.remove(inits[dq.input[0]])
        model.graph.initializer.append(numpy_helper.from_array(w, dq.input[0] + "_float"))
        model.graph.node.append(
            helper.make_node(
                "QuantizeLinear",
                [dq.input[0] + "_float", dq.input[1], dq.input[2]],
                [dq.input[0]],
                name=dq.name + "_weight_Q",
                axis=0,
            )
        )
    del model.metadata_props[:]
    toposort(model.graph)
    return model


def test_build_trt_from_another_tools_qdq_file(copy: Path, tmp_path: Path) -> None:
    from rn50.calibration import lint

    model = _modelopt_form(onnx.load(str(copy / "tiny.int8.tensorrt.onnx")))
    found = lint.lint(model, "tensorrt")  # the weight form is recognised: no per-tensor false findings
    gemm = next(n.name for n in model.graph.node if n.op_type == "Gemm")
    assert [(v.rule, v.node, v.severity) for v in found] == [
        ("float-layers", gemm, "warning")
    ]  # a float classifier, as ModelOpt's
    path = tmp_path / "modelopt.onnx"
    onnx.save(model, str(path))
    result = invoke("build-trt", "--out", str(copy), "--int8", "--onnx", str(path), "--max-batch", "16")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    art = WorkDir(copy).artifact("engine-int8")
    assert (
        art is not None and art.parent_sha256 == sha256_file(path) and art.config["onnx"] == "onnx file modelopt.onnx"
    )

    result = invoke(
        "parity",
        "--out",
        str(copy),
        "--runtime",
        "onnxruntime-cpu",
        "--artifact",
        "onnx-fp32",
        "--onnx",
        str(path),
        "--count",
        "8",
        "--json",
    )
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    rows = {r["artifact"]: r for r in json.loads(result.stdout)["results"]}  # type: ignore[attr-defined]
    assert (
        rows["modelopt.onnx"]["precision"] == "int8" and rows["modelopt.onnx"]["status"] == "pass"
    )  # judged as INT8, within bounds

    one_line_error(
        invoke("build-trt", "--out", str(copy), "--onnx", str(path)),
        2,
        "is an int8 model, but this build asks for fp32",
        "pass --int8",
    )
    one_line_error(
        invoke("build-trt", "--out", str(copy), "--int8", "--onnx", str(tmp_path / "nope.onnx")),
        2,
        "ONNX file not found",
    )


def test_int8_engine_from_a_high_precision_fp16_file(copy: Path) -> None:
    """--high-precision fp16: the engine's convolutions INT8, and its other layers FP16 (strong typing reads
    the file's types), with FP32 input and output."""
    result = invoke(
        "quantize",
        "--int8",
        "--target",
        "tensorrt",
        "--high-precision",
        "fp16",
        "--count",
        "16",
        "--method",
        "minmax",
        "--out",
        str(copy),
    )
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    result = invoke("build-trt", "--out", str(copy), "--int8", "--max-batch", "16")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    engine = _engine(copy, "int8")
    sidecar = json.loads((engine.parent / (engine.name + ".json")).read_text())
    assert sidecar["layers"]["int8_convolutions"] == CONVOLUTIONS and sidecar["layers"]["precisions"].get("Half", 0) > 0
    assert {t["dtype"] for t in sidecar["io"]} == {"DataType.FLOAT"}  # FP32 input and output
