from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rn50 import feeds
from rn50.errors import UsageError
from rn50.preprocess import preprocess


def _photo(mode: str, size: tuple[int, int] = (300, 240)) -> Image.Image:
    rng = np.random.default_rng(0)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65535, size[::-1], dtype=np.uint16))
    bands = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    arr = rng.integers(0, 255, (size[1], size[0], bands), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if bands == 1 else arr, mode)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "I;16"])
def test_preprocess_converts_any_image_to_normalised_nchw(mode: str) -> None:
    out = preprocess(_photo(mode))
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    assert -2.2 < out.min() and out.max() < 2.7  # within ImageNet-normalised [0, 1]


def test_image_folder_skips_and_counts_unreadable_files(tmp_path: Path) -> None:
    _photo("RGB").save(tmp_path / "a.jpg")
    _photo("L").save(tmp_path / "b.png")
    _photo("RGBA").save(tmp_path / "c.png")
    _photo("I;16").save(tmp_path / "d.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("hello")
    fs = feeds.image_folder(tmp_path)
    assert len(fs) == 4 and fs.skipped == 2 and fs.labels is None
    assert fs.images.shape == (4, 3, 224, 224)
    every = fs.array()  # read back from the temporary file, in batches or whole: the same images
    assert every.dtype == np.float32 and np.isfinite(every).all() and every.std() > 0
    assert np.array_equal(np.concatenate(list(fs.batches(3))), every) and [len(b) for b in fs.batches(3)] == [3, 1]
    assert "2 skipped" in fs.description and fs.warnings
    assert feeds.image_folder(tmp_path).fingerprint == fs.fingerprint


def test_empty_or_unreadable_folders_fail(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no readable images"):
        feeds.image_folder(tmp_path)
    (tmp_path / "x.png").write_bytes(b"garbage")
    with pytest.raises(UsageError, match=r"no readable images .*1 other or unreadable"):
        feeds.image_folder(tmp_path)
    with pytest.raises(UsageError, match="image folder not found"):
        feeds.image_folder(tmp_path / "nope")


def test_class_folders_with_an_index_give_labels(tmp_path: Path) -> None:
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        _photo("RGB").save(tmp_path / cls / "1.png")
    (tmp_path / "classes.txt").write_text("dog\ncat\n")
    fs = feeds.image_folder(tmp_path)
    assert fs.labels is not None and fs.labels.tolist() == [1, 0]


def test_arrays(tmp_path: Path) -> None:
    good = np.zeros((2, 3, 224, 224), np.float32)
    np.save(tmp_path / "good.npy", good)
    assert len(feeds.arrays(tmp_path / "good.npy")) == 2
    np.savez(tmp_path / "named.npz", input=good, labels=np.array([1, 2]))
    fs = feeds.arrays(tmp_path / "named.npz")
    assert fs.labels is not None and fs.labels.tolist() == [1, 2]
    cases = {
        "nhwc.npy": (np.zeros((2, 224, 224, 3), np.float32), "looks like NHWC"),
        "f64.npy": (np.zeros((2, 3, 224, 224)), "dtype float64, expected float32"),
        "small.npy": (np.zeros((2, 3, 32, 32), np.float32), r"expected \(N, 3, 224, 224\)"),
        "nan.npy": (np.full((1, 3, 224, 224), np.nan, np.float32), "NaN/Inf"),
        "empty.npy": (np.zeros((0, 3, 224, 224), np.float32), "zero images"),
    }
    for name, (arr, message) in cases.items():
        np.save(tmp_path / name, arr)
        with pytest.raises(UsageError, match=message):
            feeds.arrays(tmp_path / name)
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(UsageError, match="cannot read"):
        feeds.arrays(tmp_path / "junk.npy")


def test_only_one_source_and_random_is_flagged(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="more than one feed source"):
        feeds.resolve(images=tmp_path, random_count=2)
    noise = feeds.resolve(random_count=3)
    assert noise.kind == "random" and noise.warnings
    assert feeds.resolve(count=3).kind == "samples"
