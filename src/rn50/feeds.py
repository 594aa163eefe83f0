"""Where images come from: an image folder, .npy/.npz arrays, the sample photos, or seeded noise.

All of them yield the same thing: float32 NCHW arrays after the one preprocess, a fingerprint of the
set, and labels when a folder has class sub-folders and a class-index file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rn50.errors import UsageError
from rn50.preprocess import DEFAULT, Preprocess, preprocess
from rn50.words import opt

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}
CLASS_INDEX_FILES = ("classes.txt", "class_index.json", "imagenet_class_index.json")
DEFAULT_SAMPLE_COUNT = 32


class ImageStore:
    """Preprocessed images (float32, one shape) in an anonymous temporary file, read back a batch at a time: an image
    folder of any size is held in bounded memory (the file is deleted when the store is)."""

    def __init__(self, image_shape: tuple[int, ...]):
        import tempfile

        self.image_shape = image_shape  # of one image: (3, H, W)
        self._file = tempfile.TemporaryFile(prefix="rn50-images-")
        self._count = 0

    @property
    def shape(self) -> tuple[int, ...]:
        """(N, 3, H, W), as an array of the same images has."""
        return (self._count, *self.image_shape)

    @property
    def _item(self) -> int:
        return int(np.prod(self.image_shape)) * 4

    def append(self, image: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(image, np.float32).tobytes())
        self._count += 1

    def __len__(self) -> int:
        return self._count

    def read(self, start: int, stop: int) -> np.ndarray:
        import os

        stop = min(stop, self._count)
        out = np.empty((max(stop - start, 0), *self.image_shape), np.float32)
        self._file.flush()
        view, offset = memoryview(out).cast("B"), start * self._item
        while view:  # os.preadv may return less than asked
            got = os.preadv(self._file.fileno(), [view], offset)
            if got <= 0:
                raise OSError(f"the image store ended early ({offset} bytes)")
            view, offset = view[got:], offset + got
        return out


@dataclass(frozen=True)
class FeedSet:
    kind: str  # samples | folder | arrays | random
    description: str
    images: np.ndarray | ImageStore  # (N, 3, H, W) float32, in memory or (an image folder) in a temporary file
    fingerprint: str
    labels: np.ndarray | None = None  # (N,) int64 class indices, where known
    skipped: int = 0  # unreadable files left out
    warnings: tuple[str, ...] = field(default=())
    names: tuple[str, ...] = field(default=())  # what each input is, for a report naming it (see ``name``)
    classes: int | None = None  # how many classes the labels' class index names, where there is one

    def __len__(self) -> int:
        return len(self.images)

    def name(self, i: int) -> str:
        """Input ``i`` as a user finds it again: the image file, the sample photo and crop, the array's index."""
        return self.names[i] if i < len(self.names) else f"input {i}"

    @property
    def shape(self) -> tuple[int, ...]:
        """One image's shape, (3, H, W)."""
        return tuple(self.images.shape[1:])

    def batches(self, size: int) -> Iterator[np.ndarray]:
        """The images in order, ``size`` at a time (the last batch may be smaller); from a folder, read as they go."""
        for i in range(0, len(self), size):
            if isinstance(self.images, np.ndarray):
                yield np.ascontiguousarray(self.images[i : i + size])
            else:
                yield self.images.read(i, i + size)

    def take(self, indices: list[int]) -> np.ndarray:
        """The images at ``indices``, in that order (from a folder, read one by one)."""
        if isinstance(self.images, np.ndarray):
            return np.ascontiguousarray(self.images[indices])
        if not indices:
            return np.empty((0, *self.shape), np.float32)
        return np.concatenate([self.images.read(i, i + 1) for i in indices])

    def array(self) -> np.ndarray:
        """Every image in memory at once (for what needs them all, such as a load test's random access)."""
        return self.images if isinstance(self.images, np.ndarray) else self.images.read(0, len(self))


RANDOM_WARNING = (
    "seeded random noise is not an image: parity on it says little about real inputs, and INT8 scales "
    "calibrated on it are meaningless"
)


def check_finite(images: np.ndarray, where: str) -> None:
    bad = ~np.isfinite(images)
    if bad.any():
        first = int(np.argwhere(bad.reshape(len(images), -1).any(1))[0][0])
        raise UsageError(
            f"{where} holds {int(bad.sum())} NaN/Inf values (first in image {first})",
            fix="clean the arrays; feeds must be finite float32",
        )


def check_count(count: int, flag: str = str(opt("count"))) -> None:
    """``count`` images (or, for --random, tensors) asked for: at least one."""
    if count < 1:
        raise UsageError(f"{flag} must be >= 1, got {count}", fix="ask for at least one image")


def samples(count: int = DEFAULT_SAMPLE_COUNT, *, split: str = "evaluation", spec: Preprocess = DEFAULT) -> FeedSet:
    from rn50.samples import crop_names, fingerprint, sample_crops

    check_count(count)
    return FeedSet(
        "samples",
        f"{count} sample-photo crops ({split} split)",
        sample_crops(count, split=split, spec=spec),
        fingerprint(count, split=split, spec=spec),
        names=crop_names(count, split=split),
    )


def random_noise(count: int, *, seed: int = 0, spec: Preprocess = DEFAULT) -> FeedSet:
    check_count(count, str(opt("random")))
    log.warning(RANDOM_WARNING)
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((count, 3, spec.crop, spec.crop), dtype=np.float32)
    fp = hashlib.sha256(f"random|{count}|{seed}|{spec.describe()}".encode()).hexdigest()
    names = tuple(f"random tensor {i}" for i in range(count))
    return FeedSet(
        "random", f"{count} seeded random tensors (seed {seed})", images, fp, warnings=(RANDOM_WARNING,), names=names
    )


def _class_index(folder: Path) -> list[str] | None:
    for name in CLASS_INDEX_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if path.suffix == ".txt":
            return [line.strip() for line in path.read_text().splitlines() if line.strip()]
        try:
            data = json.loads(path.read_text())
        except ValueError as e:
            raise UsageError(f"{path} is not valid JSON ({e})", fix="fix the class-index file") from e
        if isinstance(data, dict) and all(str(k).isdigit() for k in data):  # {"0": ["n01440764", "tench"], ...}
            entries = [data[k] for k in sorted(data, key=int)]
            return [e[0] if isinstance(e, list) else str(e) for e in entries]
        if isinstance(data, list):
            return [str(e) for e in data]
        raise UsageError(
            f"{path}: expected a list of class names or {{index: [id, name]}}", fix="fix the class-index file"
        )
    return None


def _label_value(text: str, classes: list[str] | None, where: str) -> int:
    """A label as written: a class index (the model's output position), or a name / synset id of the class index."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    if classes is not None and text in classes:
        return classes.index(text)
    raise UsageError(
        f"{where}: label {text!r} is neither a class index nor a class in the class-index file",
        fix="write class indices (0-based, as the model's outputs), or put a class-index file "
        f"({', '.join(CLASS_INDEX_FILES)}) naming the classes beside the labels file",
    )


def read_labels(path: Path, files: list[str], classes: list[str] | None) -> np.ndarray:
    """Each image's class from ``path``: a CSV of ``file,label`` rows (a file named by its path in the folder or its
    name alone; a header row is allowed), or one label per line for the images in sorted order (ImageNet's
    validation layout: one folder of images and a ground-truth file). An image the file does not label counts as
    wrong (-1), with a warning."""
    import csv

    if not path.is_file():
        raise UsageError(f"labels file not found: {path}", fix=f"pass {opt('labels')} an existing CSV or text file")
    text = path.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    if path.suffix.lower() == ".csv" or (lines and "," in lines[0]):
        rows = [r for r in csv.reader(lines) if len(r) >= 2]
        if rows and not rows[0][1].strip().lstrip("-").isdigit() and (classes is None or rows[0][1] not in classes):
            rows = rows[1:]  # a header
        by_name: dict[str, int] = {}
        for i, row in enumerate(rows, start=1):
            by_name[row[0].strip()] = _label_value(row[1], classes, f"{path} row {i}")
        out = [by_name.get(f, by_name.get(Path(f).name, -1)) for f in files]
    else:
        if len(lines) < len(files):
            raise UsageError(
                f"{path} has {len(lines)} labels for {len(files)} images",
                fix="write one label per line, for the images in sorted order, or a CSV of file,label",
            )
        out = [_label_value(line, classes, f"{path} line {i}") for i, line in enumerate(lines[: len(files)], start=1)]
    unlabelled = sum(1 for v in out if v < 0)
    if unlabelled:
        log.warning("%d images have no label in %s; they count as wrong", unlabelled, path)
    return np.asarray(out, np.int64)


def _no_images(root: Path) -> UsageError:
    return UsageError(
        f"no readable images in {root} (no file has an image suffix)",
        fix=f"put images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder",
    )


def _folder(folder: Path | str) -> Path:
    root = Path(folder)
    if not root.is_dir():
        raise UsageError(f"image folder not found: {root}", fix=f"pass {opt('images')} an existing directory")
    return root


def check_image_folder(folder: Path | str) -> None:
    """Cheap checks before any work: the folder exists and holds a file with an image suffix (the walk stops
    at the first; reading the folder walks it whole, once)."""
    root = _folder(folder)
    if not any(p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in root.rglob("*")):
        raise _no_images(root)


def image_folder(
    folder: Path | str,
    *,
    spec: Preprocess = DEFAULT,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    labels_file: Path | None = None,
) -> FeedSet:
    """Every image under ``folder`` (recursively), sorted by path; unreadable files skipped and counted. The
    preprocessed images go to a temporary file as they are read (memory stays bounded whatever the folder's size);
    ``progress`` is told (images read, of how many) as it goes. Labels come from class sub-folders named in a
    class-index file, or from ``labels_file`` (``read_labels``)."""
    from PIL import Image, UnidentifiedImageError

    root = _folder(folder)
    every = [p for p in root.rglob("*") if p.is_file()]
    files = sorted(p for p in every if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise _no_images(root)
    others = sum(1 for p in every if p.suffix.lower() not in IMAGE_SUFFIXES and p.name not in CLASS_INDEX_FILES)
    if limit is not None:
        files = files[:limit]
    classes = _class_index(root)
    images, labels, skipped = ImageStore((3, spec.crop, spec.crop)), [], 0
    names: list[str] = []
    digest = hashlib.sha256(f"folder|{spec.describe()}".encode())
    for done, path in enumerate(files, start=1):
        if progress is not None:
            progress(done, len(files))
        try:
            with Image.open(path) as img:
                arr = preprocess(img, spec)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            log.warning("skipping %s: %s", path, e)  # DecompressionBombError: larger than Pillow's safety limit
            skipped += 1
            continue
        images.append(arr)
        del arr
        relative = path.relative_to(root)
        names.append(str(relative))
        digest.update(str(relative).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
        if classes is not None:
            top = relative.parts[0] if len(relative.parts) > 1 else None
            labels.append(classes.index(top) if top in classes else -1)
    skipped += others
    if not len(images):
        raise UsageError(
            f"no readable images in {root} ({skipped} other or unreadable files skipped)",
            fix=f"put images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder",
        )
    label_arr = None
    if labels_file is not None:
        label_arr = read_labels(labels_file, names, classes or _class_index(labels_file.parent))
    elif classes is not None:
        label_arr = np.asarray(labels, np.int64)
        if (label_arr < 0).any():
            log.warning(
                "%d images are not in a class sub-folder named in the class index; they count as wrong",
                int((label_arr < 0).sum()),
            )
    warnings = (f"skipped {skipped} unreadable or non-image files",) if skipped else ()
    return FeedSet(
        "folder" if label_arr is None or labels_file is None else "folder+labels",
        f"{len(images)} images from {root}" + (f" ({skipped} skipped)" if skipped else ""),
        images,
        digest.hexdigest(),
        label_arr,
        skipped,
        warnings,
        tuple(names),
        len(classes) if classes is not None else None,
    )


def arrays(path: Path | str, *, spec: Preprocess = DEFAULT) -> FeedSet:
    """A .npy array or a .npz archive (key ``input``, or its only array), float32 (N, 3, H, W), preprocessed."""
    p = Path(path)
    check_array_file(p)
    with open(p, "rb") as f:
        head = f.read(6)
    if head != b"\x93NUMPY" and not head.startswith(b"PK"):
        raise UsageError(
            f"cannot read {p}: not a .npy or .npz file (it does not start with numpy's or zip's header)",
            fix="save the preprocessed images with np.save (or np.savez with key 'input')",
        )
    try:
        loaded = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise UsageError(f"cannot read {p} as .npy/.npz ({e})", fix="save it with np.save / np.savez") from e
    if isinstance(loaded, np.lib.npyio.NpzFile):
        keys = list(loaded.keys())
        if "input" in keys:
            arr = loaded["input"]
        elif len(keys) == 1:
            arr = loaded[keys[0]]
        else:
            raise UsageError(f"{p} holds arrays {keys} and none is named 'input'", fix="name the images array 'input'")
        labels = loaded["labels"].astype(np.int64) if "labels" in keys else None
    else:
        arr, labels = loaded, None
    want = (3, spec.crop, spec.crop)
    if arr.ndim == 3 and arr.shape == want:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1:] != want:
        hint = (
            " (looks like NHWC: transpose with a.transpose(0, 3, 1, 2))" if arr.ndim == 4 and arr.shape[-1] == 3 else ""
        )
        raise UsageError(
            f"{p}: shape {arr.shape}, expected (N, {', '.join(map(str, want))}){hint}",
            fix="save preprocessed NCHW float32 images",
        )
    if arr.dtype != np.float32:
        raise UsageError(
            f"{p}: dtype {arr.dtype}, expected float32",
            fix="save a.astype(np.float32) after the ImageNet preprocess (not raw uint8 pixels)",
        )
    if len(arr) == 0:
        raise UsageError(f"{p} holds zero images", fix="save at least one image")
    check_finite(arr, str(p))
    fp = hashlib.sha256(b"arrays|" + arr.tobytes()).hexdigest()
    names = tuple(f"{p.name}[{i}]" for i in range(len(arr)))
    return FeedSet("arrays", f"{len(arr)} arrays from {p}", np.ascontiguousarray(arr), fp, labels, names=names)


def check_array_file(path: Path) -> None:
    if not path.is_file():
        raise UsageError(f"array file not found: {path}", fix=f"pass {opt('arrays')} an existing .npy or .npz file")


def check_one_source(*sources: object) -> None:
    if sum(x is not None for x in sources) > 1:
        raise UsageError(
            "more than one feed source given", fix=f"pass only one of {opt('images')}, {opt('arrays')}, {opt('random')}"
        )


def resolve(
    *,
    images: Path | None = None,
    labels: Path | None = None,
    arrays_path: Path | None = None,
    random_count: int | None = None,
    count: int = DEFAULT_SAMPLE_COUNT,
    split: str = "evaluation",
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> FeedSet:
    """The one feed source the user named (at most one of them), else the sample photos."""
    check_one_source(images, arrays_path, random_count)
    if images is not None:
        return image_folder(images, limit=limit, progress=progress, labels_file=labels)
    if arrays_path is not None:
        return arrays(arrays_path)
    if random_count is not None:
        return random_noise(random_count)
    return samples(count, split=split)
