"""Why a failing INT8 row fails, per input: for the inputs its Q/DQ file gets wrong, where their activations leave
the file's ranges and where their error first departs from the FP32 graph, each layer named by its PyTorch module
(``layer4.2.conv3 (node_Conv_858)``) — computed only for failing rows, on their failing inputs and a few passing
ones (the typical error of each layer)."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from rn50.calibration.outliers import BASELINE, Excess, explain
from rn50.exporter.layer_names import layer_label, module_names
from rn50.metrics import compare
from rn50.results.parity_results import Divergence, TriedFix

if TYPE_CHECKING:
    from collections.abc import Callable

    from rn50.feeds import FeedSet
    from rn50.metrics import OutputMetrics, Thresholds
    from rn50.results.parity_results import TargetResult
    from rn50.runtimes.registry import Target

log = logging.getLogger(__name__)
EXPLAINED = 8  # failing inputs explained per row, the worst first


def _images(feeds: FeedSet, indices: list[int]) -> np.ndarray:
    if isinstance(feeds.images, np.ndarray):
        return np.ascontiguousarray(feeds.images[indices])
    return np.concatenate([feeds.images.read(i, i + 1) for i in indices]) if indices else np.empty((0, *feeds.shape))


def try_keep_float(
    qdq: onnx.ModelProto,
    fp32: onnx.ModelProto,
    nodes: list[str],
    feeds: FeedSet,
    reference: np.ndarray,
    limits: Thresholds,
    *,
    classes: bool = True,
    threads: int | None = None,
) -> tuple[OutputMetrics, tuple[str, ...]]:
    """The fix parity offers, checked: the Q/DQ file with ``nodes`` back in float, its own semantics on every input
    of the feeds against the FP32 reference, and the failures left under ``limits``."""
    from rn50.calibration.budget import in_float
    from rn50.evaluation.semantics import semantics

    variant = qdq
    for node in nodes:
        variant = in_float(variant, fp32, node)
    with tempfile.TemporaryDirectory(prefix="rn50-fix-") as tmp:
        path = Path(tmp) / "keep-float.onnx"
        onnx.save_model(variant, str(path))
        got = semantics(path, feeds, 8, threads=threads)
    m = compare(got, reference, classes=classes)
    return m, tuple(limits.failures(m))


def explain_failures(
    results: list[TargetResult],
    feeds: FeedSet,
    fp32_onnx: Path | None,
    model: Any = None,
    *,
    reference: np.ndarray | None = None,
    thresholds: Callable[[str], Thresholds] | None = None,
    classes: bool = True,
    threads: int | None = None,
) -> list[TargetResult]:
    """``results`` with ``causes`` filled in for each failing INT8 row whose file fails against FP32, and (given the
    ``reference`` logits and ``thresholds``) the fix checked: the layers where the failing inputs depart kept in
    float, judged on every input."""
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
        departing = list(dict.fromkeys(c.departs for c in causes if c.departs))
        tried = None
        if departing and reference is not None and thresholds is not None:
            metrics, left = try_keep_float(
                onnx.load(r.semantics_file),
                fp32,
                departing,
                feeds,
                reference,
                thresholds(r.precision),
                classes=classes,
                threads=threads,
            )
            tried = TriedFix(tuple(names.get(n, n) for n in departing), metrics, left)
        out.append(dataclasses.replace(r, causes=labelled, tried_fix=tried))
    return out


# --- any failing row: the first layer where the runtime departs from PyTorch ------------------------------------
def _hooked_module(conv: str, modules: dict[str, Any]) -> str:
    """The PyTorch module whose output a (BatchNorm-folded) ONNX convolution computes."""
    import torch

    head, _, last = conv.rpartition(".")
    candidates = []
    if last.startswith("conv"):
        candidates.append(f"{head}.bn{last[4:]}" if head else f"bn{last[4:]}")
    if last == "0" and head.endswith("downsample"):
        candidates.append(f"{head}.1")
    for name in candidates:
        if isinstance(modules.get(name), torch.nn.BatchNorm2d):
            return name
    return conv


def _torch_layers(model: Any, images: np.ndarray, wanted: dict[str, str]) -> dict[str, np.ndarray]:
    """node → the PyTorch output of its module (``wanted``: node → module name), on ``images``."""
    import torch

    modules = dict(model.named_modules())
    hooked = {node: _hooked_module(name, modules) for node, name in wanted.items()}
    got: dict[str, np.ndarray] = {}
    handles = []
    for node, name in hooked.items():

        def keep(_m: Any, _i: Any, out: Any, node: str = node) -> None:
            got[node] = out.detach().float().cpu().numpy()

        handles.append(modules[name].register_forward_hook(keep))
    try:
        with torch.inference_mode():
            model.eval()(torch.from_numpy(np.ascontiguousarray(images)))
    finally:
        for h in handles:
            h.remove()
    return got


def _cosines(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    a = got.astype(np.float64).reshape(len(got), -1)
    b = ref.astype(np.float64).reshape(len(ref), -1)
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.where(denom > 0, (a * b).sum(1) / np.maximum(denom, 1e-30), 1.0)
    return np.where(np.isfinite(cos), cos, -1.0)  # an overflow (inf/NaN) is as far from the reference as it gets


def locate_divergence(
    target: Target, result: TargetResult, feeds: FeedSet, model: Any, fp32: onnx.ModelProto, threads: int | None
) -> Divergence:
    """The first layer where ``target``'s runtime departs from PyTorch on ``result``'s failing inputs."""
    from rn50.calibration.outliers import DEPART_FACTOR, DEPARTS
    from rn50.calibration.quality import with_tensor_outputs
    from rn50.runtimes.registry import make_runner

    path = target.path
    if path is None or path.suffix != ".onnx" or model is None:
        return Divergence(None, None, (), 0, "its layers cannot be marked (not an ONNX file); see its ONNX source")
    inputs = result.inputs
    if inputs is None or result.input_verdict is None:
        return Divergence(None, None, (), 0, "no per-input error to pick failing inputs from")
    names = module_names(fp32, model)
    candidate = onnx.load(str(path))
    nodes = [n for n in candidate.graph.node if n.op_type in ("Conv", "Gemm") and n.name in names]
    if not nodes:
        return Divergence(None, None, (), 0, "no layer of the file matches the PyTorch model's")
    cos = np.asarray(inputs.cosine)
    bound = result.input_verdict.bound if result.input_verdict.bound is not None else -np.inf
    order = [int(i) for i in np.argsort(cos)]
    failing = [i for i in order if cos[i] < bound][:EXPLAINED] or order[:1]
    passing = [i for i in reversed(order) if cos[i] >= bound][:BASELINE]
    images = _images(feeds, failing + passing)
    outputs = {n.name: n.output[0] for n in nodes}
    with tempfile.TemporaryDirectory(prefix="rn50-marked-") as tmp:
        marked = Path(tmp) / path.name
        onnx.save_model(with_tensor_outputs(candidate, list(outputs.values())), str(marked))
        runner = make_runner(dataclasses.replace(target, path=marked), threads=threads)
        with runner:
            got = runner.infer({"input": images})
    ref = _torch_layers(model, images, {n: names[n] for n in outputs})
    rows = []
    first = None
    for node, tensor in outputs.items():
        if tensor not in got or node not in ref or got[tensor].shape != ref[node].shape:
            continue
        c = _cosines(got[tensor], ref[node])
        bad, good = c[: len(failing)], c[len(failing) :]
        typical = float(np.median(good)) if len(good) else 1.0
        worst = float(np.min(bad))
        label = layer_label(node, names)
        rows.append((label, float(np.median(bad)), typical))
        if first is None and worst < DEPARTS and (1 - worst) > DEPART_FACTOR * max(1 - typical, 1e-9):
            first = (label, worst)
    return Divergence(first[0] if first else None, first[1] if first else None, tuple(rows), len(failing))


def locate_all(
    results: list[TargetResult],
    targets: dict[str, Target],
    feeds: FeedSet,
    fp32_onnx: Path | None,
    model: Any,
    threads: int | None,
) -> list[TargetResult]:
    """``results`` with ``divergence`` filled in for every failing row whose runtime can mark its layers."""
    if model is None or fp32_onnx is None or not fp32_onnx.is_file():
        return results
    fp32 = onnx.load(str(fp32_onnx))
    out = []
    for r in results:
        target = targets.get(r.label)
        if r.status != "fail" or target is None:
            out.append(r)
            continue
        try:
            found = locate_divergence(target, r, feeds, model, fp32, threads)
        except Exception as e:  # noqa: BLE001 - locating is a diagnosis; the verdict stands without it
            log.warning("%s: could not locate the layer where it departs: %s", r.label, e)
            found = Divergence(None, None, (), 0, f"could not be located: {e}")
        out.append(dataclasses.replace(r, divergence=found))
    return out
