"""Expensive artifacts are built once per test session."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import readme_commands, run_readme_line

from rn50.artifacts import WorkDir
from rn50.weights import LoadedModel, load_model

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator
    from types import ModuleType


# Fixtures that export or calibrate a full ResNet-50 (or run the whole pipeline): a test using one is marked
# ``slow``, so that `pytest -m "not slow"` is the fast inner loop.
SLOW_FIXTURES = {"export_dir", "quantized_dir", "pipeline_run", "workdir_copy", "fp32_onnx"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def seeded_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The seeded weights are cached in a folder of this session's (inherited by every CLI subprocess), never
    in the user's own cache."""
    from rn50.weights import CACHE_ENV

    folder = tmp_path_factory.mktemp("rn50-cache")
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    yield folder
    if before is None:
        del os.environ[CACHE_ENV]
    else:
        os.environ[CACHE_ENV] = before


@pytest.fixture(scope="session")
def seeded50() -> LoadedModel:
    return load_model("seeded", depth=50)


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory, seeded50: LoadedModel) -> Path:
    """A work directory holding the verified seeded ResNet-50 at opset 18. Tests copy it to change it."""
    from rn50.exporter.onnx_file import ExportConfig, write_fp32_onnx

    root = tmp_path_factory.mktemp("export50")
    write_fp32_onnx(ExportConfig(), WorkDir(root), loaded=seeded50)
    return root


@pytest.fixture()
def workdir_copy(export_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "work"
    shutil.copytree(export_dir, dst)
    return dst


@pytest.fixture(scope="session")
def fp32_onnx(export_dir: Path) -> Path:
    return export_dir / "resnet50.fp32.onnx"


@pytest.fixture(scope="session")
def quantized_dir(tmp_path_factory: pytest.TempPathFactory, export_dir: Path) -> Path:
    """``export_dir`` plus the FP16 file and both INT8 Q/DQ files (16 crops, minmax). Tests copy it to change it."""
    from typer.testing import CliRunner

    from rn50.cli import app

    root = tmp_path_factory.mktemp("quantized") / "work"
    shutil.copytree(export_dir, root)
    result = CliRunner().invoke(app, ["quantize", "--int8", "--fp16", "--out", str(root), "--count", "16", "--method", "minmax"])
    assert result.exit_code == 0, result.output
    return root


STANDIN = Path(__file__).resolve().parent / "standin"


def _tensorrt_modules() -> list[str]:
    return [m for m in sys.modules if m == "tensorrt" or m.startswith(("tensorrt.", "tensorrt_bindings"))]


@contextlib.contextmanager
def standin_tensorrt() -> Iterator[ModuleType]:
    """rn50's TensorRT stand-in as the ``tensorrt`` module, here and in subprocesses (PYTHONPATH); whatever
    ``tensorrt`` was loaded before is put back afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        for name in _tensorrt_modules():
            mp.delitem(sys.modules, name)
        mp.syspath_prepend(str(STANDIN))
        mp.setenv("PYTHONPATH", os.pathsep.join([str(STANDIN), *filter(None, [os.environ.get("PYTHONPATH")])]))
        import tensorrt

        assert hasattr(tensorrt, "__rn50_standin__"), tensorrt.__file__
        try:
            yield tensorrt
        finally:
            for name in _tensorrt_modules():
                del sys.modules[name]


@pytest.fixture()
def trt_standin() -> Iterator[ModuleType]:
    with standin_tensorrt() as module:
        yield module


@pytest.fixture(scope="module")
def trt_standin_module() -> Iterator[ModuleType]:
    """The stand-in for a whole test module (its module-scoped fixtures build engines with it)."""
    with standin_tensorrt() as module:
        yield module


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The README's quick start, run as written: `rn50 pipeline` in an empty folder (the end-to-end run)."""
    first = readme_commands()[0]
    assert first.split("#")[0].strip() == "rn50 pipeline", f"the README quick start should be `rn50 pipeline`, found {first!r}"
    cwd = tmp_path_factory.mktemp("quickstart")
    return cwd / "rn50-out", run_readme_line(first, cwd)
