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
