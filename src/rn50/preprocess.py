"""The one preprocess: every image that reaches a model (export check, calibration, parity, profile)
goes through :func:`preprocess`, so INT8 scales and parity numbers are measured on the same inputs."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    resize: int = 256  # shorter side, bilinear
    crop: int = 224  # centre crop
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD
    layout: str = "NCHW"

    def describe(self) -> dict[str, object]:
        return asdict(self)


DEFAULT = Preprocess()


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from grayscale, palette, RGBA (alpha dropped) or 16-bit images."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        image = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    elif image.mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        top = 1.0 if arr.max() <= 1.0 else 255.0
        image = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return image.convert("RGB")


def normalize(rgb: Image.Image, spec: Preprocess = DEFAULT) -> np.ndarray:
    """(3, H, W) float32 from an 8-bit RGB image: scale to [0, 1], subtract mean, divide by std."""
    arr = np.asarray(rgb, dtype=np.float32) / 255.0
    arr = (arr - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def preprocess(image: Image.Image, spec: Preprocess = DEFAULT) -> np.ndarray:
    """Resize the shorter side, centre-crop, normalise: (3, crop, crop) float32."""
    rgb = to_rgb(image)
    w, h = rgb.size
    scale = spec.resize / min(w, h)
    rgb = rgb.resize((max(spec.crop, round(w * scale)), max(spec.crop, round(h * scale))), Image.Resampling.BILINEAR)
    w, h = rgb.size
    left, top = (w - spec.crop) // 2, (h - spec.crop) // 2
    return normalize(rgb.crop((left, top, left + spec.crop, top + spec.crop)), spec)
