"""Range collection with ONNX Runtime's calibrators (minmax, entropy, percentile) over a feed set."""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rn50.errors import UsageError
from rn50.feeds import FeedSet, check_finite
from rn50.words import opt

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

METHODS = ("minmax", "entropy", "percentile")
# `rn50 quantize --method auto`: every method, each INT8 file measured on held-apart crops, the best kept.
AUTO_METHOD = "auto"
DEFAULT_METHOD = "percentile"
DEFAULT_PERCENTILE = 99.99
MIN_IMAGES_FOR_REAL_USE = 500
CHUNK = 2


def method_options(method: str, *, percentile: float | None = None) -> dict[str, Any]:
    """The options that define a method's ranges (part of the table's cache key)."""
    if method not in METHODS:
        raise UsageError(f"unknown calibration method {method!r}", fix=f"use one of {', '.join(METHODS)}")
    if method == "percentile":
        p = DEFAULT_PERCENTILE if percentile is None else percentile
        if not 50.0 < p <= 100.0:
            raise UsageError(f"{opt('percentile')} {p} is out of range", fix="pass a value in (50, 100], e.g. 99.99")
        return {"percentile": p, "num_bins": 2048, "symmetric": True}
    if percentile is not None:
        raise UsageError(
            f"{opt('percentile')} applies to {opt('method')} percentile, not {method}",
            fix=f"drop {opt('percentile')} or pass {opt('method')} percentile",
        )
    if method == "entropy":
        return {"num_bins": 128, "num_quantized_bins": 128, "symmetric": False}
    return {"symmetric": False, "moving_average": False}


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over fixed batches, reporting progress."""

    def __init__(self, batches: list[np.ndarray], progress: Callable[[int], None] | None):
        self._batches = batches
        self._progress = progress
        self._it: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        if batch is None:
            return None
        if self._progress:
            self._progress(len(batch))
        return {"input": batch}

    def __len__(self) -> int:
        return len(self._batches)

    def rewind(self) -> None:
        self._it = iter(self._batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._it = iter(self._batches[start_index:end_index])


def check_feeds(feeds: FeedSet, *, image_size: int = 224, warn_small: bool = True) -> None:
    if len(feeds) == 0:
        raise UsageError(
            "the calibration set holds zero images", fix=f"pass {opt('images')} with images, or use the sample photos"
        )
    if feeds.shape != (3, image_size, image_size):
        raise UsageError(
            f"calibration images are {feeds.shape}, the model takes (3, {image_size}, {image_size})",
            fix="use the same preprocess as the model (resize 256, centre crop 224)",
        )
    if isinstance(feeds.images, np.ndarray):  # a folder's images come from the preprocess: finite by construction
        check_finite(feeds.images, "the calibration set")
    if warn_small and len(feeds) < MIN_IMAGES_FOR_REAL_USE:
        log.warning(
            "calibrating on %d images; use at least %d representative images for a deployment",
            len(feeds),
            MIN_IMAGES_FOR_REAL_USE,
        )


def collect_ranges(
    onnx_path: Path,
    feeds: FeedSet,
    method: str,
    options: dict[str, Any],
    *,
    batch: int = 16,
    progress: Callable[[int], None] | None = None,
    warn_small: bool = True,
) -> dict[str, tuple[float, float]]:
    """(low, high) of every activation tensor (all node outputs and the input), by ORT's calibrator."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    check_feeds(feeds, warn_small=warn_small)
    ort_method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method]
    # ORT's calibrators print progress to stdout; rn50 reports its own.
    with tempfile.TemporaryDirectory(prefix="rn50-calib-") as tmp, contextlib.redirect_stdout(io.StringIO()):
        # ORT writes a shape-inferred copy next to the model it is given (<model>-inferred.onnx) and leaves
        # it behind if that write fails (a full disk): give it a link in the temporary folder instead.
        model = Path(tmp) / "model.onnx"
        try:
            os.link(onnx_path, model)
        except OSError:
            shutil.copyfile(onnx_path, model)
        calibrator = create_calibrator(
            model,
            None,  # every tensor: one table serves every target's placement
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=ort_method,
            providers=["CPUExecutionProvider"],
            extra_options=options,
        )
        # A few batches per call: ORT keeps every intermediate output of a call in memory (its histograms are
        # merged call by call), and a folder's images are read as they go: memory does not grow with the set.
        batches = feeds.batches(batch)
        while chunk := list(itertools.islice(batches, CHUNK)):
            calibrator.collect_data(_Reader(chunk, progress))
        data = calibrator.compute_data()
        del calibrator
    ranges = {}
    for name in data:
        td = data[name]
        lo, hi = (float(np.asarray(v).reshape(-1)[0]) for v in td.range_value)
        ranges[name] = (lo, hi)
    return ranges
