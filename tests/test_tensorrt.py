"""TensorRT logic without TensorRT: pure functions, the API guard, mypy against tensorrt-stubs.
Real engine builds are marked `trt` and skipped with the reason where TensorRT or a GPU is absent."""

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from rn50.errors import CheckFailed, UsageError
from rn50.runtimes.trt_env import tensorrt_reason
from rn50.runtimes.trt_plan import (
    REMOVED_APIS,
    BuildOptions,
    Sidecar,
    check_int8_engine,
    check_sidecar,
    engine_key,
    profile_shapes,
    read_layer_report,
)

ROOT = Path(__file__).resolve().parents[1]
TRT_MODULES = [
    ROOT / "src" / "rn50" / "runtimes" / n
    for n in ("trt_engine.py", "trt_runner.py", "trt_build.py", "trt_env.py", "device.py")
]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"min_batch": 4, "opt_batch": 2}, "not ordered"),
        ({"opt_batch": 64, "max_batch": 32}, "not ordered"),
        ({"min_batch": 0}, "must be >= 1"),
        ({"opt_level": 6}, "out of range"),
        ({"hardware_compat": "turing"}, "--hardware-compat"),
        ({"workspace_mib": 0}, "--workspace"),
        ({"precision": "int4"}, "unknown precision"),
    ],
)
def test_bad_build_options(changes: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        replace(BuildOptions(), **changes).validate()


def test_profile_shapes_and_cache_key() -> None:
    opts = BuildOptions(min_batch=1, opt_batch=8, max_batch=32)
    assert profile_shapes(opts) == ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))
    key = engine_key("abc", "10.13.0", "9.0", opts)
    assert key == engine_key("abc", "10.13.0", "9.0", opts)
    assert (
        len(
            {
                key,
                engine_key("abd", "10.13.0", "9.0", opts),
                engine_key("abc", "11.0.0", "9.0", opts),
                engine_key("abc", "10.13.0", "8.9", opts),
                engine_key("abc", "10.13.0", "9.0", replace(opts, max_batch=64)),
            }
        )
        == 5
    )


def _sidecar(**options: object) -> Sidecar:
    return Sidecar(
        "10.13.0.35", "NVIDIA H100", "9.0", "onnx", "engine", "key", {"precision": "fp16", **options}, [], []
    )


def test_sidecar_check_refuses_other_machines() -> None:
    check_sidecar(_sidecar(), tensorrt_version="10.13.0.35", compute_capability="9.0", precision="fp16")
    with pytest.raises(
        UsageError, match=r"built with TensorRT 10.13.0.35; this machine has 11.4.0.106 .*rn50 build-trt --fp16"
    ):
        check_sidecar(_sidecar(), tensorrt_version="11.4.0.106", compute_capability="9.0", precision="fp16")
    with pytest.raises(UsageError, match=r"compute capability 9.0 .*this GPU is 8.9.*--hardware-compat ampere-plus"):
        check_sidecar(_sidecar(), tensorrt_version="10.13.0.35", compute_capability="8.9", precision="fp16")
    check_sidecar(
        _sidecar(hardware_compat="ampere-plus"),
        tensorrt_version="10.13.0.35",
        compute_capability="8.6",
        precision="fp16",
    )
    with pytest.raises(UsageError):
        check_sidecar(
            _sidecar(hardware_compat="ampere-plus"),
            tensorrt_version="10.13.0.35",
            compute_capability="7.5",
            precision="fp16",
        )
    check_sidecar(
        _sidecar(version_compat=True), tensorrt_version="10.14.1.0", compute_capability="9.0", precision="fp16"
    )
    with pytest.raises(UsageError):  # version compatibility does not cross a major version, nor go back
        check_sidecar(
            _sidecar(version_compat=True), tensorrt_version="11.0.0.1", compute_capability="9.0", precision="fp16"
        )
    with pytest.raises(UsageError):
        check_sidecar(
            _sidecar(version_compat=True), tensorrt_version="10.12.0.36", compute_capability="9.0", precision="fp16"
        )


def test_sidecar_round_trip_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "m.engine.json"
    _sidecar().save(path)
    assert Sidecar.load(path) == _sidecar()
    with pytest.raises(UsageError, match="is missing"):
        Sidecar.load(tmp_path / "none.engine.json")
    path.write_text("{}")
    with pytest.raises(UsageError, match="not an rn50 engine sidecar"):
        Sidecar.load(path)


def _inspector(conv_dtype: str) -> str:
    return json.dumps(
        {
            "Layers": [
                {
                    "Name": "conv1 + relu",
                    "LayerType": "CaskConvolution",
                    "Inputs": [{"Format/Datatype": f"{conv_dtype} NC/32HW32"}],
                },
                {
                    "Name": "Reformatting CopyNode for input",
                    "LayerType": "Reformat",
                    "Inputs": [{"Format/Datatype": "Float NCHW"}],
                },
                {"Name": "fc", "LayerType": "CaskGemmMatrixMultiply", "Inputs": [{"Format/Datatype": "Half"}]},
            ]
        }
    )


def test_layer_report_reads_10x_and_11x_datatypes_and_skips_what_it_cannot_read() -> None:
    text = json.dumps(
        {
            "Layers": [
                "a name only (LAYER_NAMES_ONLY verbosity)",
                {
                    "Name": "c1",
                    "LayerType": "CaskConvolution",
                    "Inputs": [{"Format/Datatype": "Row major linear FP32"}],
                },
                {
                    "Name": "c2",
                    "LayerType": "CaskConvolution",
                    "Inputs": [{"Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
                },
                {
                    "Name": "c3",
                    "LayerType": "CaskConvolution",
                    "Inputs": [{"Format": "Thirty-two wide channel vectorized", "DataType": "Int8"}],
                },
                {"Name": "c4", "LayerType": "CaskConvolution", "Inputs": [{"Format/Datatype": "something new"}]},
            ]
        }
    )
    report = read_layer_report(text)
    assert report.precisions == {"Float": 1, "Half": 1, "Int8": 1, "?": 1} and report.int8_convolutions == 1
    assert report.non_int8_convolutions == ["c1 (Float)", "c2 (Half)", "c4 (?)"]


def test_a_tensorrt_module_without_a_gpu_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real-looking TensorRT (no stand-in mark) goes through torch CUDA, which sees no GPU here."""
    import types

    from rn50.errors import EnvironmentProblem
    from rn50.runtimes import trt_env

    fake = types.ModuleType("tensorrt")
    fake.Builder = object  # type: ignore[attr-defined]
    fake.__version__ = "10.13.0.35"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(EnvironmentProblem, match="TensorRT needs a CUDA GPU: no CUDA GPU visible to torch"):
        trt_env.require_tensorrt()
    assert trt_env.runtime_name() == "tensorrt" and trt_env.version() == "10.13.0.35"
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # not installed at all
    with pytest.raises(EnvironmentProblem, match="TensorRT is not installed"):
        trt_env.require_tensorrt()


def test_layer_report_and_int8_check() -> None:
    report = read_layer_report(_inspector("Int8"))
    assert (
        report.layers == 3 and report.int8_convolutions == 1 and report.reformats == ["Reformatting CopyNode for input"]
    )
    assert report.precisions == {"Int8": 1, "Float": 1, "Half": 1}
    check_int8_engine(report)
    with pytest.raises(
        CheckFailed, match=r"1 convolutions not running in INT8 \(conv1 \(Half\)\)"
    ):  # the ONNX node it came from
        check_int8_engine(read_layer_report(_inspector("Half")))


def test_no_api_that_tensorrt_11_removed() -> None:
    for path in TRT_MODULES:
        tree = ast.parse(path.read_text())
        names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        names |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert not names & set(REMOVED_APIS), f"{path.name} uses {sorted(names & set(REMOVED_APIS))}"
    source = (ROOT / "src" / "rn50" / "runtimes" / "trt_engine.py").read_text()
    assert "STRONGLY_TYPED" in source and "set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)" in source


def _imports_tensorrt(node: ast.AST) -> bool:
    if isinstance(node, ast.Import):
        return any(a.name.split(".")[0] == "tensorrt" for a in node.names)
    return isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tensorrt"


def test_one_lazy_tensorrt_import() -> None:
    """No TensorRT module imports tensorrt at run time except through trt_env (the bug class of the first
    build-trt crash: a name imported for type checking only, used at run time)."""
    for path in TRT_MODULES:
        tree = ast.parse(path.read_text())
        runtime_imports = [n for n in ast.walk(tree) if _imports_tensorrt(n)]
        guarded = {
            id(n)
            for stmt in ast.walk(tree)
            if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test)
            for n in ast.walk(stmt)
        }
        loose = [ast.unparse(n) for n in runtime_imports if id(n) not in guarded]
        assert not loose, f"{path.name}: {loose}"


def _patched_stubs(tmp: Path) -> Path:
    """tensorrt-stubs 10.13 ships .pyi files without py.typed and with a few syntax slips (a parameter
    named `in`, a non-default after defaults); a copy with those mended makes mypy read them."""
    for name in ("tensorrt", "tensorrt_bindings"):
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.submodule_search_locations
        shutil.copytree(
            list(spec.submodule_search_locations)[0], tmp / name, ignore=shutil.ignore_patterns("*.so", "*.py")
        )
    pyi = tmp / "tensorrt_bindings" / "tensorrt.pyi"
    text = re.sub(r"(?<=[(,] )in:", "in_:", pyi.read_text())
    pyi.write_text(
        text.replace("power: Weights = None, channel_axis: int)", "power: Weights = None, channel_axis: int = ...)")
    )
    return tmp


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt_bindings") is None or importlib.util.find_spec("mypy") is None,
    reason="needs tensorrt-stubs and mypy (pip install --no-deps tensorrt-stubs)",
)
@pytest.mark.slow  # runs mypy
def test_tensorrt_modules_type_check_against_tensorrt_stubs(tmp_path: Path) -> None:
    stubs = _patched_stubs(tmp_path / "stubs")
    canary = tmp_path / "canary.py"
    canary.write_text(
        "import tensorrt as trt\nconfig = trt.Builder(trt.Logger()).create_builder_config()\nconfig.no_such_option "
        "= 1\n"
    )
    env = {**os.environ, "MYPYPATH": str(stubs)}
    files = [str(p) for p in TRT_MODULES] + [str(ROOT / "src" / "rn50" / "runtimes" / "trt_plan.py"), str(canary)]
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--ignore-missing-imports", "--no-incremental", *files],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    ours = [
        line
        for line in run.stdout.splitlines()
        if "error:" in line and not line.startswith((str(stubs), "stubs/", str(tmp_path)))
    ]
    ours = [line for line in ours if "tensorrt_bindings" not in line.split(":")[0]]
    assert not [line for line in ours if "canary" not in line], "\n".join(ours)
    assert any("canary" in line and "no_such_option" in line for line in run.stdout.splitlines()), run.stdout[-2000:]


def test_build_trt_without_tensorrt_says_how_to_install_first(tmp_path: Path) -> None:
    """Fail fast: in an empty directory the first message is about TensorRT, and nothing is created."""
    from typer.testing import CliRunner

    from rn50.cli import app

    if tensorrt_reason() is None:
        pytest.skip("TensorRT is installed here")
    result = CliRunner().invoke(app, ["build-trt", "--out", str(tmp_path / "new")])
    assert (
        result.exit_code == 2 and "pip install 'rn50[tensorrt]'" in result.output and "Traceback" not in result.output
    )
    assert not (tmp_path / "new").exists()
    result = CliRunner().invoke(app, ["build-trt", "--out", str(tmp_path), "--fp16", "--int8"])
    assert result.exit_code == 2 and "--fp16 and --int8 together" in result.output


@pytest.mark.trt
@pytest.mark.skipif(tensorrt_reason() is not None, reason=f"TensorRT unavailable: {tensorrt_reason()}")
def test_real_fp32_engine_builds_runs_and_matches(workdir_copy: Path) -> None:
    import numpy as np

    from rn50.artifacts import WorkDir
    from rn50.commands.build_trt import BuildTrtOptions, build_trt
    from rn50.metrics import compare
    from rn50.runtimes.ort_runner import OnnxRuntimeRunner
    from rn50.runtimes.trt_runner import TensorRTRunner

    workdir = WorkDir(workdir_copy)
    options = BuildTrtOptions(BuildOptions(precision="fp32", opt_batch=2, max_batch=8))
    result = build_trt(options, workdir)
    x = {"input": np.random.default_rng(0).standard_normal((2, 3, 224, 224), dtype=np.float32)}
    with TensorRTRunner(result.engine) as trt_run, OnnxRuntimeRunner(workdir_copy / "resnet50.fp32.onnx") as ort:
        assert compare(trt_run.infer(x)["logits"], ort.infer(x)["logits"]).cosine_min > 0.9999
    assert build_trt(options, workdir).reused
