"""Expensive artifacts are built once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rn50.artifacts import WorkDir
from rn50.weights import LoadedModel, load_model


@pytest.fixture(scope="session")
def seeded50() -> LoadedModel:
    return load_model("seeded", depth=50)


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory, seeded50: LoadedModel) -> Path:
    """A work directory holding the verified seeded ResNet-50 at opset 18. Tests copy it to change it."""
    from rn50.exporter.run import ExportConfig, export

    root = tmp_path_factory.mktemp("export50")
    export(ExportConfig(), WorkDir(root), loaded=seeded50)
    return root


@pytest.fixture()
def workdir_copy(export_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "work"
    shutil.copytree(export_dir, dst)
    return dst


@pytest.fixture(scope="session")
def fp32_onnx(export_dir: Path) -> Path:
    return export_dir / "resnet50.fp32.onnx"
