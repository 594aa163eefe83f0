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

from rn50.calibration.outliers import BASELINE, Excess, departs, explain
from rn50.exporter.layer_names import layer_label, module_names
from rn50.metrics import compare, cosine_per_input
from rn50.onnx_graph import LAYER_OPS
from rn50.results.parity_results import Divergence, TriedFix

if TYPE_CHECKING:
    from collections.abc import Callable

    from rn50.feeds import FeedSet
    from rn50.metrics import OutputMetrics, Thresholds
    from rn50.results.parity_results import PairResult
    from rn50.runtimes.registry import Pair

log = logging.getLogger(__name__)
EXPLAINED = 8  # failing inputs explained per row, the worst first


def _failing_and_passing(cosines: tuple[float, ...], bound: float | None) -> tuple[list[int], list[int]]:
    """The inputs a diagnosis runs on: the failing ones under ``bound``, worst first (at most EXPLAINED; at least the
    worst one), and the best passing ones (at most BASELINE), whose errors are each layer's typical error."""
    cos = np.asarray(cosines)
    limit = bound if bound is not None else -np.inf
    order = [int(i) for i in np.argsort(cos)]
    failing = [i for i in order if cos[i] < limit][:EXPLAINED] or order[:1]
    passing = [i for i in reversed(order) if cos[i] >= limit][:BASELINE]
    return failing, passing


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


def explain_row(
    r: PairResult,
    fp32: onnx.ModelProto,
    names: dict[str, str],
    feeds: FeedSet,
    reference: np.ndarray,
    thresholds: Callable[[str], Thresholds],
    *,
    classes: bool,
    threads: int | None,
) -> PairResult:
    """A failing INT8 row whose file fails against FP32, with ``causes`` per failing input and the fix checked: the
    layers where the failing inputs depart kept in float, judged on every input."""
    assert r.file_inputs is not None and r.input_verdict is not None and r.semantics_file is not None
    failing, passing = _failing_and_passing(r.file_inputs.cosine, r.input_verdict.bound)
    qdq = onnx.load(r.semantics_file)
    causes = explain(fp32, qdq, feeds.take(failing), [feeds.name(i) for i in failing], feeds.take(passing))
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
    if departing:
        limits = thresholds(r.precision)
        metrics, left = try_keep_float(qdq, fp32, departing, feeds, reference, limits, classes=classes, threads=threads)
        tried = TriedFix(tuple(names.get(n, n) for n in departing), metrics, left)
    return dataclasses.replace(r, causes=labelled, tried_fix=tried)


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


def locate_divergence(
    pair: Pair, result: PairResult, feeds: FeedSet, model: Any, names: dict[str, str], threads: int | None
) -> Divergence:
    """The first layer where ``pair``'s runtime departs from PyTorch on ``result``'s failing inputs (``names``:
    ONNX node → PyTorch module)."""
    from rn50.calibration.quality import with_tensor_outputs
    from rn50.runtimes.registry import make_runner

    path = pair.path
    if path is None or path.suffix != ".onnx" or model is None:
        return Divergence(None, None, (), 0, "its layers cannot be marked (not an ONNX file); see its ONNX source")
    inputs = result.inputs
    if inputs is None or result.input_verdict is None:
        return Divergence(None, None, (), 0, "no per-input error to pick failing inputs from")
    candidate = onnx.load(str(path))
    nodes = [n for n in candidate.graph.node if n.op_type in LAYER_OPS and n.name in names]
    if not nodes:
        return Divergence(None, None, (), 0, "no layer of the file matches the PyTorch model's")
    failing, passing = _failing_and_passing(inputs.cosine, result.input_verdict.bound)
    images = feeds.take(failing + passing)
    outputs = {n.name: n.output[0] for n in nodes}
    with tempfile.TemporaryDirectory(prefix="rn50-marked-") as tmp:
        marked = Path(tmp) / path.name
        onnx.save_model(with_tensor_outputs(candidate, list(outputs.values())), str(marked))
        runner = make_runner(dataclasses.replace(pair, path=marked), threads=threads)
        with runner:
            got = runner.infer({"input": images})
    ref = _torch_layers(model, images, {n: names[n] for n in outputs})
    rows = []
    first = None
    for node, tensor in outputs.items():
        if tensor not in got or node not in ref or got[tensor].shape != ref[node].shape:
            continue
        c = cosine_per_input(got[tensor], ref[node])
        c = np.where(np.isfinite(c), c, -1.0)  # an overflow (inf/NaN) is as far from the reference as it gets
        bad, good = c[: len(failing)], c[len(failing) :]
        typical = float(np.median(good)) if len(good) else 1.0
        worst = float(np.min(bad))
        label = layer_label(node, names)
        rows.append((label, float(np.median(bad)), typical))
        if first is None and departs(np.asarray(worst), np.asarray(typical)):
            first = (label, worst)
    return Divergence(first[0] if first else None, first[1] if first else None, tuple(rows), len(failing))


def diagnose(
    results: list[PairResult],
    pairs: dict[str, Pair],
    feeds: FeedSet,
    fp32_onnx: Path | None,
    model: Any,
    *,
    reference: np.ndarray,
    thresholds: Callable[[str], Thresholds],
    classes: bool,
    threads: int | None,
    say: Callable[[str], None],
) -> list[PairResult]:
    """Every failing row of ``results`` with what can be found of why: for an INT8 row whose file fails against
    FP32, its causes per input and the fix checked (``explain_row``); for a row whose runtime can mark its layers,
    where it first departs from PyTorch (``locate_divergence``). The FP32 graph is read and its layers named once."""
    failing = [r for r in results if r.status == "fail"]
    if not failing or model is None or fp32_onnx is None or not fp32_onnx.is_file():
        return results
    fp32 = onnx.load(str(fp32_onnx))
    try:
        names = module_names(fp32, model)
    except Exception as e:  # noqa: BLE001 - naming is a courtesy; the diagnosis stands without it
        log.warning("could not map ONNX layers to PyTorch modules: %s", e)
        names = {}
    out = []
    for r in results:
        if r.status != "fail":
            out.append(r)
            continue
        if (
            r.file_inputs is not None
            and r.input_verdict is not None
            and r.semantics_file is not None
            and r.semantics_file.endswith(".onnx")  # layer by layer on a Q/DQ ONNX file (not a PT2E program)
        ):
            say(f"INT8: why {r.label}'s failing inputs fail, layer by layer")
            r = explain_row(r, fp32, names, feeds, reference, thresholds, classes=classes, threads=threads)
        pair = pairs.get(r.label)
        if pair is not None:
            say(f"locating the first layer where {r.label} departs from PyTorch")
            try:
                found = locate_divergence(pair, r, feeds, model, names, threads)
            except Exception as e:  # noqa: BLE001 - locating is a diagnosis; the verdict stands without it
                log.warning("%s: could not locate the layer where it departs: %s", r.label, e)
                found = Divergence(None, None, (), 0, f"could not be located: {e}")
            r = dataclasses.replace(r, divergence=found)
        out.append(r)
    return out
