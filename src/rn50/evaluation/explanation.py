"""Why a failing INT8 row fails, per input: for the inputs its Q/DQ file gets wrong, where their activations leave
the file's ranges and where their error first departs from the FP32 graph, each layer named by its PyTorch module
(``layer4.2.conv3 (node_Conv_858)``) — computed only for failing rows, on their failing inputs and a few passing
ones (the typical error of each layer)."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from rn50.calibration.outliers import BASELINE, Excess, explain
from rn50.exporter.layer_names import layer_label, module_names

if TYPE_CHECKING:
    from pathlib import Path

    from rn50.feeds import FeedSet
    from rn50.results.parity_results import TargetResult

log = logging.getLogger(__name__)
EXPLAINED = 8  # failing inputs explained per row, the worst first


def _images(feeds: FeedSet, indices: list[int]) -> np.ndarray:
    if isinstance(feeds.images, np.ndarray):
        return np.ascontiguousarray(feeds.images[indices])
    return np.concatenate([feeds.images.read(i, i + 1) for i in indices]) if indices else np.empty((0, *feeds.shape))


def explain_failures(
    results: list[TargetResult], feeds: FeedSet, fp32_onnx: Path | None, model: Any = None
) -> list[TargetResult]:
    """``results`` with ``causes`` filled in for each failing INT8 row whose file fails against FP32."""
    todo = [
        r
        for r in results
        if r.status == "fail" and r.file_inputs is not None and r.semantics_file and r.input_verdict is not None
    ]
    if not todo or fp32_onnx is None or not fp32_onnx.is_file():
        return results
    fp32 = onnx.load(str(fp32_onnx))
    names: dict[str, str] = {}
    if model is not None:
        try:
            names = module_names(fp32, model)
        except Exception as e:  # noqa: BLE001 - naming is a courtesy; the explanation stands without it
            log.warning("could not map ONNX layers to PyTorch modules: %s", e)
    out = []
    for r in results:
        if r not in todo or r.file_inputs is None or r.input_verdict is None or r.semantics_file is None:
            out.append(r)
            continue
        cos = np.asarray(r.file_inputs.cosine)
        bound = r.input_verdict.bound if r.input_verdict.bound is not None else -np.inf
        order = list(np.argsort(cos))
        failing = [int(i) for i in order if cos[i] < bound][:EXPLAINED] or [int(order[0])]
        passing = [int(i) for i in reversed(order) if cos[i] >= bound][:BASELINE]
        causes = explain(
            fp32,
            onnx.load(r.semantics_file),
            _images(feeds, failing),
            [feeds.name(i) for i in failing],
            _images(feeds, passing),
        )
        labelled = tuple(
            dataclasses.replace(
                c,
                outside=tuple(Excess(layer_label(e.node, names), e.ratio) for e in c.outside),
                departs=layer_label(c.departs, names) if c.departs else None,
                lowest=layer_label(c.lowest, names) if c.lowest else None,
            )
            for c in causes
        )
        out.append(dataclasses.replace(r, causes=labelled))
    return out
