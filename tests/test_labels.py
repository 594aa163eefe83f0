"""Accuracy from labelled real photos, in the layouts people keep them: class sub-folders with a class index,
ImageNet's validation layout (one folder and a ground-truth file), a CSV of file,label. The photos are the 20 ImageNet
validation images the foolbox package ships with their class in the file name (read as files; foolbox is not
imported)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rn50.cli import app
from rn50.errors import UsageError
from rn50.feeds import image_folder, read_labels
from rn50.metrics import Thresholds

cli = CliRunner()


def _photos() -> list[tuple[Path, int]]:
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("foolbox is not installed (pip install 'rn50[dev]'): its 20 ImageNet photos are the test data")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    found = sorted(data.glob("imagenet_*.jpg"))
    assert len(found) == 20, found
    return [(p, int(p.stem.split("_")[2])) for p in found]  # imagenet_<n>_<class>.jpg


CLASSES = [f"class{i}" for i in range(1000)]


@pytest.fixture()
def layouts(tmp_path: Path) -> dict[str, list[str]]:
    """The same photos in each layout; the arguments parity takes for each."""
    photos = _photos()
    sub = tmp_path / "subfolders"
    for path, label in photos:
        (sub / CLASSES[label]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, sub / CLASSES[label] / path.name)
    (sub / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    val = tmp_path / "val"
    val.mkdir()
    for path, _ in photos:
        shutil.copy(path, val / path.name)
    truth = tmp_path / "ground_truth.txt"  # one label per line, the images in sorted order
    truth.write_text("".join(f"{label}\n" for _, label in photos))
    table = tmp_path / "labels.csv"
    table.write_text("file,label\n" + "".join(f"{p.name},{label}\n" for p, label in reversed(photos)))
    named = tmp_path / "named.csv"  # labels by class name, through the class index beside the file
    named.write_text("".join(f"{p.name},{CLASSES[label]}\n" for p, label in photos))
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return {
        "class sub-folders": ["--images", str(sub)],
        "ImageNet validation": ["--images", str(val), "--labels", str(truth)],
        "CSV of file,label": ["--images", str(val), "--labels", str(table)],
        "CSV of class names": ["--images", str(val), "--labels", str(named)],
    }


def test_every_layout_gives_the_same_labels(layouts: dict[str, list[str]]) -> None:
    expected = np.array([label for _, label in _photos()])
    for name, args in layouts.items():
        folder = Path(args[1])
        labels = Path(args[3]) if len(args) > 2 else None
        feeds = image_folder(folder, labels_file=labels)
        order = np.argsort([Path(n).name for n in feeds.names])  # sub-folders sort by class first
        assert feeds.labels is not None, name
        assert (feeds.labels[order] == expected).all(), name


def test_parity_reports_accuracy_for_each_layout(tiny: Path, layouts: dict[str, list[str]]) -> None:
    accuracies = set()
    for name, args in layouts.items():
        result = cli.invoke(app, ["parity", "--out", str(tiny), "--runtime", "onnxruntime-cpu", *args])
        assert result.exit_code == 0, f"{name}: {result.output}"
        data = json.loads((tiny / "parity.json").read_text())
        assert data["feeds"]["labelled"] is True, name
        (row,) = data["results"]
        accuracies.add((data["reference"]["accuracy_top1"], row["accuracy_top1"], row["accuracy_top5"]))
    assert len(accuracies) == 1  # the same photos and labels, whatever the layout


def test_accuracy_drop_is_judged_against_the_reference() -> None:
    bound = Thresholds(max_top1_drop=0.01)
    assert bound.accuracy_failures(0.76, 0.755) == []
    (failure,) = bound.accuracy_failures(0.76, 0.74)
    assert "2.00% below the reference's 76.00% (> 1.00%)" in failure
    assert bound.accuracy_failures(None, 0.5) == []  # no labels: nothing to judge
    assert "top-1 accuracy drop≤1.00%" in bound.describe()


def test_a_percent_threshold_is_read_as_a_fraction(tiny: Path, layouts: dict[str, list[str]]) -> None:
    args = layouts["ImageNet validation"]
    result = cli.invoke(
        app,
        ["parity", "--out", str(tiny), "--runtime", "onnxruntime-cpu", *args, "--threshold", "fp32:max_top1_drop=0%"],
    )
    assert result.exit_code == 0, result.output  # ONNX Runtime FP32 loses no accuracy against PyTorch
    data = json.loads((tiny / "parity.json").read_text())
    assert "top-1 accuracy drop≤0.00%" in data["results"][0]["thresholds"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("0\n1\n", "has 2 labels for 3 images"),
        ("0\nzebra\n7\n", "label 'zebra' is neither a class index nor a class"),
    ],
)
def test_bad_labels_are_refused_with_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "truth.txt"
    path.write_text(content)
    with pytest.raises(UsageError, match=message):
        read_labels(path, ["a.jpg", "b.jpg", "c.jpg"], None)


def test_labels_without_images_are_refused(tiny: Path, tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text("a.jpg,1\n")
    result = cli.invoke(app, ["parity", "--out", str(tiny), "--labels", str(tmp_path / "l.csv")])
    assert result.exit_code == 2 and "--labels labels the images of --images" in result.output


def test_a_class_index_of_another_size_is_warned_about(tiny: Path, tmp_path: Path) -> None:
    photos = _photos()[:4]
    folder = tmp_path / "two"
    for i, (path, _) in enumerate(photos):
        (folder / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / f"c{i % 2}" / path.name)
    (folder / "classes.txt").write_text("c0\nc1\n")
    result = cli.invoke(app, ["parity", "--out", str(tiny), "--runtime", "onnxruntime-cpu", "--images", str(folder)])
    assert result.exit_code == 0, result.output
    warnings = json.loads((tiny / "parity.json").read_text())["feeds"]["warnings"]
    assert any("names 2 classes but the model has 1000 outputs" in w for w in warnings), warnings


def test_json_failures_are_json_objects(tmp_path: Path) -> None:
    result = cli.invoke(app, ["parity", "--out", str(tmp_path / "nowhere"), "--json"])
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["exit_code"] == 2 and "not an rn50 work directory" in data["error"] and data["fix"]
