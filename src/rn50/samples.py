"""Sample photos: the real photographs bundled with scikit-image, random-cropped deterministically.

No download is needed, so tests, seeded weights and the default calibration set work offline.
Two splits draw different crops, so quality is measured on crops that calibration never saw.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from rn50.preprocess import DEFAULT, Preprocess, normalize, to_rgb

# Photographs (not drawings or test patterns) in scikit-image's data folder.
PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "retina.jpg",
    "camera.png",
    "coins.png",
    "moon.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "page.png",
    "text.png",
    "clock_motion.png",
    "microaneurysms.png",
    "cell.png",
    "color.png",
)
SPLIT_SEEDS = {"calibration": 0, "evaluation": 1, "weights": 2}


def photo_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def photo_paths() -> list[Path]:
    folder = photo_dir()
    return [folder / name for name in PHOTOS if (folder / name).is_file()]


def _crop(photo: Image.Image, rng: np.random.Generator, spec: Preprocess) -> np.ndarray:
    w, h = photo.size
    side = min(w, h) * rng.uniform(0.35, 1.0)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw, ch = min(w, side * np.sqrt(aspect)), min(h, side / np.sqrt(aspect))
    left, top = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
    box = (int(left), int(top), int(left + cw), int(top + ch))
    crop = photo.crop(box).resize((spec.crop, spec.crop), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return normalize(crop, spec)


def sample_crops(count: int, *, split: str = "evaluation", spec: Preprocess = DEFAULT) -> np.ndarray:
    """``count`` crops, (count, 3, crop, crop) float32; the same arguments give the same array."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_SEEDS)}")
    paths = photo_paths()
    photos = [to_rgb(Image.open(p)) for p in paths]
    rng = np.random.default_rng(SPLIT_SEEDS[split])
    out: np.ndarray = np.empty((count, 3, spec.crop, spec.crop), np.float32)
    for i in range(count):
        out[i] = _crop(photos[i % len(photos)], rng, spec)
    return out


def crop_names(count: int, *, split: str = "evaluation") -> tuple[str, ...]:
    """Which photo and which of its crops each of ``sample_crops(count, split=split)`` is."""
    paths = photo_paths()
    return tuple(f"{paths[i % len(paths)].stem} crop {i // len(paths) + 1} ({split} split)" for i in range(count))


def fingerprint(count: int, *, split: str, spec: Preprocess = DEFAULT) -> str:
    """Identifies a crop set without computing it: photo bytes, split, count, preprocess."""
    h = hashlib.sha256(f"samples|{split}|{count}|{spec.describe()}".encode())
    for p in photo_paths():
        h.update(p.name.encode())
        h.update(str(p.stat().st_size).encode())
    return h.hexdigest()
