"""PyTorch's ahead-of-time path (rn50 export --pt2, runtime aoti-cpu) on the tiny net: the package made, verified and
recorded with what it was compiled for, run by parity and profile beside PyTorch, refused when made for another torch
or CPU (a crafted sidecar) and when changed (its sha256). Inductor compiles C++: slow."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import one_line_error
from typer.testing import CliRunner

from rn50.artifacts import WorkDir
from rn50.cli import app

cli = CliRunner()
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def packaged(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny import tiny_net

    from rn50.exporter.pt2 import write_pt2

    root = Path(shutil.copytree(tiny_dir, tmp_path_factory.mktemp("pt2") / "work"))
    result = write_pt2(WorkDir(root), tiny_net(), stem="tiny", parent_sha256=None)
    assert result.verified, result.failures
    return root


@pytest.fixture()
def work(packaged: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from tiny import tiny_net

    net = tiny_net()
    monkeypatch.setattr("rn50.weights.workdir_model", lambda _workdir: net)
    return Path(shutil.copytree(packaged, tmp_path / "work"))


def test_the_package_is_recorded_with_what_it_was_compiled_for(work: Path) -> None:
    import torch

    from rn50.runtimes.pt2_package import this_isa

    art = WorkDir(work).artifact("pt2-fp32-cpu")
    assert art is not None and art.kind == "pt2" and art.verified and art.path == "tiny.fp32.cpu.pt2"
    side = json.loads((work / "tiny.fp32.cpu.pt2.json").read_text())
    assert side["torch"] == torch.__version__ and side["isa"] == this_isa() and side["package_sha256"] == art.sha256
    assert side["static_batches"] == [1]  # batch 1 compiled apart too, and verified with the dynamic model
    assert art.extra["compile_s"] > 0 and art.extra["verify_max_abs"] < 1e-4
    assert cli.invoke(app, ["verify", "--out", str(work)]).exit_code == 0


def test_parity_and_profile_run_the_package_beside_pytorch(work: Path) -> None:
    done = cli.invoke(app, ["parity", "--out", str(work), "--count", "4", "--runtime", "aoti-cpu"])
    assert done.exit_code == 0, done.output
    (row,) = json.loads((work / "parity.json").read_text())["results"]
    assert (row["runtime"], row["artifact"], row["precision"], row["status"]) == (
        "aoti-cpu",
        "pt2-fp32-cpu",
        "fp32",
        "pass",
    )
    assert row["metrics"]["max_abs"] < 1e-4 and row["metrics"]["cosine_min"] > 0.999999
    args = ["profile", "--out", str(work), "--runtime", "torch-cpu,aoti-cpu", "--batch", "1,3", "--warmup", "0"]
    done = cli.invoke(app, [*args, "--warmup-iterations", "1", "--iterations", "3", "--threads", "1"])
    assert done.exit_code == 0, done.output
    ok = {
        (r["runtime"], r["batch"])
        for r in json.loads((work / "profile.json").read_text())["rows"]
        if r["status"] == "ok"
    }
    assert ok == {("torch-cpu", 1), ("torch-cpu", 3), ("aoti-cpu", 1), ("aoti-cpu", 3)}


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [("torch", "2.0.0", "was compiled by torch 2.0.0"), ("isa", "neon", "compiled for the CPU instruction set neon")],
)
def test_a_package_for_another_torch_or_cpu_is_refused_before_it_is_loaded(
    work: Path, field: str, value: str, words: str
) -> None:
    side = work / "tiny.fp32.cpu.pt2.json"
    data = json.loads(side.read_text()) | {field: value}
    side.write_text(json.dumps(data))
    done = cli.invoke(app, ["parity", "--out", str(work), "--count", "4", "--runtime", "aoti-cpu"])
    one_line_error(done, 2, words, "rn50 export --pt2")


def test_a_changed_package_is_refused_and_verify_says_so(work: Path) -> None:
    package = work / "tiny.fp32.cpu.pt2"
    package.write_bytes(package.read_bytes()[:-10] + b"0123456789")
    done = cli.invoke(app, ["parity", "--out", str(work), "--count", "4", "--runtime", "aoti-cpu"])
    one_line_error(done, 2, "tiny.fp32.cpu.pt2 changed since it was made")
    result = cli.invoke(app, ["verify", "--out", str(work), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["verdict"] == "failed"


# --- INT8: PT2E (rn50 quantize --int8 --pt2) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def quantized(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The tiny net's work directory after `rn50 quantize --int8 --pt2` (8 calibration crops): its ONNX Runtime INT8
    file, and PyTorch's INT8 package with its quantized program; and what the command said (--json)."""
    from tiny import tiny_net

    root = Path(shutil.copytree(tiny_dir, tmp_path_factory.mktemp("pt2-int8") / "work"))
    net = tiny_net()
    with pytest.MonkeyPatch.context() as m:
        m.setattr("rn50.weights.workdir_model", lambda _workdir: net)
        args = ["quantize", "--out", str(root), "--int8", "--pt2", "--count", "8", "--target", "onnxruntime-cpu"]
        done = cli.invoke(app, [*args, "--json"])
    assert done.exit_code == 0, done.output
    return root, json.loads(done.stdout)


@pytest.fixture()
def work8(quantized: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from tiny import tiny_net

    net = tiny_net()
    monkeypatch.setattr("rn50.weights.workdir_model", lambda _workdir: net)
    return Path(shutil.copytree(quantized[0], tmp_path / "work"))


def test_the_int8_package_comes_with_its_program_and_is_verified_against_it(quantized: tuple[Path, dict]) -> None:
    root, said = quantized
    work = WorkDir(root)
    package, program = work.artifact("pt2-int8-cpu"), work.artifact("pt2-int8-program")
    assert package is not None and program is not None
    assert (package.kind, package.precision, package.path) == ("pt2", "int8", "tiny.int8.cpu.pt2")
    assert (program.kind, program.precision, program.path) == ("pt2-program", "int8", "tiny.int8.program.pt2")
    assert package.parent_sha256 == program.sha256  # parity finds the package's semantics by it
    assert package.verified and package.extra["verified_against"] == "fidelity"
    assert package.extra["verify_cosine_min"] > 0.999 and package.extra["quantize_s"] > 0
    assert program.extra["vs_fp32_cosine_mean"] > 0.99 and "torchao" in program.versions
    side = json.loads((root / "tiny.int8.cpu.pt2.json").read_text())
    assert (side["precision"], side["classes"]) == ("int8", 1000)
    (reported,) = [d["pt2"] for d in said if "pt2" in d]
    assert reported["verified"] and reported["verified_against"] == "program"
    assert reported["program_vs_fp32"]["cosine_min"] > 0.99
    assert cli.invoke(app, ["verify", "--out", str(root)]).exit_code == 0


def test_parity_judges_the_int8_package_against_fp32_and_its_program(work8: Path) -> None:
    done = cli.invoke(app, ["parity", "--out", str(work8), "--count", "4", "--runtime", "aoti-cpu", "--json"])
    assert done.exit_code == 0, done.output
    (row,) = json.loads((work8 / "parity.json").read_text())["results"]
    assert (row["runtime"], row["artifact"], row["precision"], row["status"]) == (
        "aoti-cpu",
        "pt2-int8-cpu",
        "int8",
        "pass",
    )
    assert row["semantics_file"].endswith("tiny.int8.program.pt2")
    assert row["fidelity"]["cosine_min"] > 0.999  # the package computes what its program says
    assert 0.99 < row["quantization"]["cosine_mean"] < 1  # the program's own error: INT8, not FP32
    assert "its PT2E-quantized program" in (work8 / "parity.md").read_text()


def test_a_changed_program_is_refused(work8: Path) -> None:
    program = work8 / "tiny.int8.program.pt2"
    program.write_bytes(program.read_bytes()[:-10] + b"0123456789")
    done = cli.invoke(app, ["parity", "--out", str(work8), "--count", "4", "--runtime", "aoti-cpu"])
    one_line_error(done, 2, "tiny.int8.program.pt2 changed since it was made")


def test_an_int8_package_for_another_torch_names_the_command_that_remakes_it(work8: Path) -> None:
    side = work8 / "tiny.int8.cpu.pt2.json"
    side.write_text(json.dumps(json.loads(side.read_text()) | {"torch": "2.0.0"}))
    done = cli.invoke(app, ["parity", "--out", str(work8), "--count", "4", "--runtime", "aoti-cpu"])
    one_line_error(done, 2, "was compiled by torch 2.0.0", "rn50 quantize --int8 --pt2")


def test_the_int8_package_is_served_by_rn50s_runner(quantized: tuple[Path, dict]) -> None:
    """What `rn50 serve --artifact pt2-int8-cpu` runs inside Triton's Python backend (the real server is tested on
    ResNet-50 in test_serving): its inputs and outputs from the sidecar, one answer per request."""
    import numpy as np

    from rn50.runtimes.kinds import KINDS
    from rn50.serving.backend import Refusal, ServedArtifact, ServedModel

    root, _ = quantized
    art = WorkDir(root).artifact("pt2-int8-cpu")
    assert art is not None
    path = root / art.path
    io = KINDS["pt2"].io
    assert io is not None
    read = io(path)
    assert read.batch_range == (1, 64) and read.outputs[0].dims == (1000,)
    model = ServedModel.open(ServedArtifact("aoti-cpu", "int8", art.name, path, art.sha256, threads=1))
    try:
        x = np.random.default_rng(0).standard_normal((3, 3, 224, 224)).astype(np.float32)
        bad = x[:1].copy()
        bad[0, 0, 0, 0] = np.nan
        one, two, refused = model.answer([x[:1], x[1:], bad])
        assert isinstance(refused, Refusal) and refused.client_error
        assert isinstance(one, np.ndarray) and isinstance(two, np.ndarray)
        assert one.shape == (1, 1000) and two.shape == (2, 1000) and np.isfinite(two).all()
    finally:
        model.close()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--pt2"], "--pt2 without --int8"),
        (["--fp16", "--pt2"], "--pt2 without --int8"),
    ],
)
def test_pt2_without_int8_is_refused(tiny_dir: Path, args: list[str], words: str) -> None:
    one_line_error(cli.invoke(app, ["quantize", "--out", str(tiny_dir), *args]), 2, words)


def test_without_torchao_the_int8_package_is_refused_with_the_install_line(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "torchao", None)  # import torchao raises ImportError
    done = cli.invoke(app, ["quantize", "--out", str(tiny_dir), "--int8", "--pt2"])
    one_line_error(done, 2, "needs torchao", "pip install 'rn50[pt2e]'")


def test_on_a_cpu_without_vnni_activations_are_7_bit(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The X86 Inductor quantizer's reduce_range on an avx2-class CPU (its documentation's advice for CPUs without
    VNNI: u8×s8 pair sums stay within 16 bits), recorded in the manifest; 8-bit activations on this machine's class
    are the quantized fixture's."""
    import torch
    import torchao  # noqa: F401 - the program's quantize/dequantize operators

    from rn50.machine import cpu_info as real_cpu_info

    monkeypatch.setattr("rn50.machine.cpu_info", lambda *a, **k: real_cpu_info(*a, **k) | {"int8_class": "avx2"})
    done = cli.invoke(app, ["quantize", "--out", str(tiny), "--int8", "--pt2", "--count", "4", "--target", "tensorrt"])
    assert done.exit_code == 0, done.output
    art = WorkDir(tiny).artifact("pt2-int8-program")
    assert art is not None and art.config["activations"].startswith("7-bit")
    program = torch.export.load(str(tiny / art.path))
    maxima = {
        n.args[4]
        for n in program.graph.nodes
        if n.op == "call_function" and "quantize_per_tensor" in str(n.target) and n.args[5] == torch.uint8
    }
    assert maxima == {127}


def _float_in_program(root: Path) -> set[str]:
    """The tiny net's layers whose weights PT2E left in float (no per-channel dequantize feeds them)."""
    import torch
    import torchao  # noqa: F401 - the program's quantize/dequantize operators

    program = torch.export.load(str(root / "tiny.int8.program.pt2"))
    quantized = sum(
        1 for n in program.graph.nodes if n.op == "call_function" and "dequantize_per_channel" in str(n.target)
    )
    layers = {"stem", "conv1", "conv2", "fc"}
    floats = set(WorkDir(root).artifact("pt2-int8-program").config["float_modules"])  # type: ignore[union-attr]
    assert quantized == len(layers - floats)  # every other layer's weights are int8
    return floats


def test_the_classifier_stays_float_and_keep_float_leaves_the_same_layers_out(tiny: Path) -> None:
    """As rn50's Q/DQ files: the classifier in float, and --keep-float's layers (by module or ONNX node) left out of
    PyTorch's INT8 package too; a residual Add is said not to apply (PT2E quantizes it with its convolution)."""
    args = ["quantize", "--out", str(tiny), "--int8", "--pt2", "--count", "4", "--target", "tensorrt"]
    done = cli.invoke(app, [*args, "--keep-float", "conv1", "--keep-float", "add"])
    assert done.exit_code == 0, done.output
    assert _float_in_program(tiny) == {"fc", "conv1"}
    assert "not left out of PyTorch's INT8 package: add" in done.output
    assert "left in float: fc, conv1" in done.output


def test_a_budget_is_judged_on_pytorchs_package_too(tiny: Path) -> None:
    args = ["quantize", "--out", str(tiny), "--int8", "--pt2", "--count", "4", "--target", "onnxruntime-cpu"]
    done = cli.invoke(app, [*args, "--classifier", "int8", "--budget", "min_cosine_mean=0.9"])
    assert done.exit_code == 0, done.output
    assert _float_in_program(tiny) == set()  # --classifier int8: every layer INT8 (the budget holds without more)
    art = WorkDir(tiny).artifact("pt2-int8-cpu")
    assert art is not None and art.config["budget"] == "mean cos≥0.9"
    assert "budget met" in done.output
