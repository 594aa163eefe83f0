"""INT8 to an accuracy budget: rank the quantized layers by sensitivity, then leave the most sensitive ones
out of INT8, one at a time, until the budget holds on held-apart crops.

Step 0 is the file rn50 writes without a budget (every Conv/Gemm INT8 but, by default, the classifier).
Sensitivity is measured by leaving one layer out: each Conv/Gemm put back in float alone, every other layer
INT8, and the logits' mean cosine to the FP32 graph measured (the higher, the more that layer costs in INT8).
NVIDIA-AI-IOT's YOLOv7 QAT sample ranks layers this way (``yolov7_qat/scripts/qat.py``,
``cmd_sensitive_analysis``: quantization disabled in one layer at a time); NVIDIA's pytorch-quantization
ResNet example does the converse (``classification_flow.py``, ``build_sensitivity_profile``: one layer
quantized alone). Leaving one out is chosen because the search starts from the fully quantized model: the
ranking measures exactly what each candidate's first exclusion would gain there, error carried in from the
other INT8 layers included, and it runs at INT8 speed on ONNX Runtime (quantizing one layer alone runs an
almost float model 54 times).

The candidates are the quantized Conv/Gemm layers and, in a form that quantizes only a residual Add's shortcut
(the TensorRT form, for Conv+Add fusion), each such Add: left out, its shortcut stays float. Measured on the seeded
ResNet-50 (benchmarks/bench_int8_budget.py): the 16 shortcut Q/DQs cost the TensorRT form about half its error
(cosine mean 0.99470 → 0.99719 with all of them float, every Conv INT8). Its post-ReLU tensors are symmetric int8,
so 127 levels where ONNX Runtime's uint8 form has 255, and the residual stream takes that rounding at each
block; with the shortcuts as candidates the search meets 0.998 where convolutions alone flattened out below it.
A float shortcut costs TensorRT that block's Conv+Add fusion (the Add runs in float), so it is left out only
where it buys accuracy, as a layer is.

The ranking runs on the first ``RANK_CROPS`` held-apart crops; the steps, and the verdict, on all of them.
A step whose layer does not raise the logits' mean cosine on those crops puts the layer back in INT8 and
goes on to the next one: a float layer costs speed, so only the ones that buy accuracy stay out.
The ranking edits the fully quantized file (the layer's own input Q/DQ and weight dropped, its float weight
and bias restored); every step is a file the target's own emitter wrote with those layers excluded, so the
file that meets the budget is the artifact, not an approximation of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rn50.metrics import fmt
from rn50.words import opt

if TYPE_CHECKING:  # kept light: the CLI imports this module's defaults
    from collections.abc import Callable

    import numpy as np
    import onnx

    from rn50.metrics import OutputMetrics, Thresholds

RANK_CROPS = 16  # held-apart crops the ranking runs on (the first of the budget crops)
# The ranking in two passes: every candidate on the first SCREEN_CROPS crops, then the SCREEN_KEEP most sensitive of
# those again on RANK_CROPS. Measured (seeded ResNet-50, budget min_cosine_mean=0.998, 2-core x86, vnni class): one
# pass on 16 crops, searches of 93 s (tensorrt, 10 left out) and 68 s (onnxruntime-cpu, 3); one pass on 8 crops,
# 66 s and 52 s but a worse ranking (13 and 4 left out); two passes, 68 s and 51 s with 10 and 3 left out.
SCREEN_CROPS = 4
SCREEN_KEEP = 12
BUDGET_CROPS = 64  # held-apart crops every step is measured on
DEFAULT_MAX_EXCLUDED = 16
# The classifier (the final Gemm) in INT8 or float, --classifier. Float by default, chosen by measurement
# (benchmarks/bench_int8_budget.py; seeded ResNet-50, 64 held-apart crops, 2-core x86 CPU): in float it
# raises the logits' cosine mean 0.99612 → 0.99678 (onnxruntime-cpu) and 0.99350 → 0.99466 (tensorrt), more
# than any single convolution on the TensorRT file, for 1 % of ONNX Runtime CPU latency at batch 1 (12.40
# vs 12.26 ms; 12.66 vs 12.48 ms in a second run). ModelOpt keeps it in float too.
CLASSIFIER_PRECISIONS = ("float", "int8")
EVAL_BATCH = 16


def classifier(model: onnx.ModelProto) -> str | None:
    """The final Gemm (the one producing a graph output), if the model ends in one."""
    outputs = {o.name for o in model.graph.output}
    return next((n.name for n in model.graph.node if n.op_type == "Gemm" and set(n.output) & outputs), None)


@dataclass(frozen=True)
class Sensitivity:
    node: str
    op: str
    cosine_mean: float  # logits vs FP32 with this layer alone in float (on ``crops`` ranking crops)
    gain: float  # over the fully quantized model, same crops
    crops: int = RANK_CROPS  # SCREEN_CROPS: screened out, ranked after every candidate measured on RANK_CROPS


@dataclass(frozen=True)
class Step:
    left_out: str | None  # the layer this step tries out of INT8 (None: the fully quantized model)
    output: OutputMetrics  # logits vs FP32 on the budget crops, with this and every kept layer left out
    met: bool
    kept: bool = True  # False: no gain in cosine mean, the layer went back to INT8


@dataclass(frozen=True)
class BudgetSearch:
    target: str
    budget: Thresholds
    max_excluded: int
    ranking: tuple[Sensitivity, ...]  # most sensitive first; empty when the fully quantized file meets the budget
    steps: tuple[Step, ...]
    ranked_on: int
    checked_on: int
    seconds: float = field(compare=False)

    @property
    def excluded(self) -> tuple[str, ...]:
        return tuple(s.left_out for s in self.steps if s.left_out is not None and s.kept)

    @property
    def met(self) -> bool:
        return self.steps[-1].met

    @property
    def final(self) -> OutputMetrics:
        """The metrics of the file the search ends with (its last kept step)."""
        return next(s.output for s in reversed(self.steps) if s.kept)

    def summary(self) -> str:
        """One line: what the search did, for the console and the report."""
        first, last = self.steps[0].output, self.final
        if len(self.steps) == 1 and self.met:
            return (
                f"budget {self.budget.describe()} already met by the INT8 file without {opt('budget')} "
                f"(cosine mean {first.cosine_mean:.6f}): nothing left out"
            )
        verb = "met" if self.met else "NOT met"
        tried = len(self.steps) - 1
        return (
            f"budget {self.budget.describe()} {verb} with {len(self.excluded)} layer(s) left out of INT8 ({tried} "
            "tried): "
            f"cosine mean {first.cosine_mean:.6f} → {last.cosine_mean:.6f}, top-1 {fmt(first.top1_agreement, '.3f')} → "
            f"{fmt(last.top1_agreement, '.3f')} ({self.checked_on} held-apart crops, {self.seconds:.0f} s)"
        )


class Evaluator:
    """Logits of candidate models on the budget crops, against the FP32 graph's: each file's own Q/DQ semantics
    (ONNX Runtime's CPU provider with graph optimizations off, as parity's "file vs FP32" and the quantize report
    compute them), so the search measures the file on any CPU, never one CPU's INT8 kernels. Candidates run from
    the last tensor they share with the base file (``rn50.calibration.prefix``): the same numbers, less work."""

    def __init__(self, fp32: onnx.ModelProto, crops: np.ndarray, reference: np.ndarray | None = None):
        """``reference``: the FP32 graph's logits on ``crops`` where the caller has them (one run for every target)."""
        from rn50.calibration.prefix import PrefixCache

        self.crops = crops
        self.reference = self.run(fp32, crops, [])[0] if reference is None else reference
        self.prefix = PrefixCache(self.run, crops)

    @staticmethod
    def run(model: onnx.ModelProto, feed: np.ndarray, names: list[str]) -> list[np.ndarray]:
        """The logits and the named tensors of ``model`` on ``feed`` (fed to its one input), in EVAL_BATCH batches."""
        import numpy as np
        import onnx
        import onnxruntime as ort

        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        probe.graph.output.extend(
            onnx.helper.make_empty_tensor_value_info(n) for n in names if n not in {o.name for o in probe.graph.output}
        )
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # Q/DQ run as written
        opts.log_severity_level = 3  # the quantized graphs leave unused float initializers: not worth a warning each
        session = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        wanted = [model.graph.output[0].name, *names]
        name = session.get_inputs()[0].name
        parts = [session.run(wanted, {name: feed[i : i + EVAL_BATCH]}) for i in range(0, len(feed), EVAL_BATCH)]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(wanted))]

    def measure(self, model: onnx.ModelProto, count: int | None = None) -> OutputMetrics:
        from rn50.metrics import compare

        got = self.prefix.logits(model, count)
        return compare(got, self.reference[: len(got)])

    def rebase(self, model: onnx.ModelProto) -> None:
        """Candidates from now on differ from ``model`` (the file the search keeps so far)."""
        self.prefix.rebase(model)


def shortcut_adds(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Residual Adds with exactly one input dequantized (the shortcut of a Conv+Add the form fuses), in graph order."""
    from rn50.onnx_graph import dequantized, producers, residual_adds

    made_by = producers(model.graph)
    return [
        n
        for n in residual_adds(model.graph)
        if len(n.input) == 2 and sum(dequantized(i, made_by) for i in n.input) == 1
    ]


def candidates(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """What the search may leave out of INT8: every quantized Conv/Gemm, then every quantized residual shortcut."""
    from rn50.calibration.lint import quantized_layers

    return [*quantized_layers(model), *shortcut_adds(model)]


def in_float(quantized: onnx.ModelProto, fp32: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """A copy of ``quantized`` with the layer ``name`` alone back in float: its input read before its Q/DQ,
    its weight and bias the FP32 graph's (a residual Add: its shortcut read before its Q/DQ)."""
    import onnx

    from rn50.calibration.qdq_onnxruntime import read_float_inputs
    from rn50.onnx_graph import LAYER_OPS, toposort

    out = onnx.ModelProto()
    out.CopyFrom(quantized)
    graph = out.graph
    node = next(n for n in graph.node if n.name == name)
    original = next(n for n in fp32.graph.node if n.name == name)
    floats = {i.name: i for i in fp32.graph.initializer}
    for i in range(1, len(original.input) if original.op_type in LAYER_OPS else 0):
        tensor = onnx.TensorProto()
        tensor.CopyFrom(floats[original.input[i]])
        tensor.name = f"{original.input[i]}__float"  # the quantized graph may reuse the name for a DQ output
        graph.initializer.append(tensor)
        node.input[i] = tensor.name
    read_float_inputs(graph, frozenset({name}))
    toposort(graph)
    return out


def rank(
    full: onnx.ModelProto,
    fp32: onnx.ModelProto,
    evaluator: Evaluator,
    *,
    count: int = RANK_CROPS,
    screen: int = SCREEN_CROPS,
    keep: int = SCREEN_KEEP,
    progress: Callable[[str], None] | None = None,
) -> tuple[Sensitivity, ...]:
    """Every candidate (``candidates``), most sensitive first (ties in graph order): all of them on the first
    ``screen`` crops, the ``keep`` most sensitive of those again on ``count`` crops (ranked first)."""
    layers = candidates(full)
    two_passes = screen < count
    total = len(layers) + (min(keep, len(layers)) if two_passes else 0)

    def measured(nodes: list[onnx.NodeProto], crops: int, done: int) -> list[Sensitivity]:
        base = evaluator.measure(full, crops).cosine_mean
        rows = []
        for i, node in enumerate(nodes, done + 1):
            if progress:
                progress(f"ranking layers by sensitivity: {i}/{total}")
            cos = evaluator.measure(in_float(full, fp32, node.name), crops).cosine_mean
            rows.append(Sensitivity(node.name, node.op_type, cos, cos - base, crops))
        return sorted(rows, key=lambda r: -r.cosine_mean)  # stable: ties in graph order

    if not two_passes:
        return tuple(measured(layers, count, 0))
    screened = measured(layers, screen, 0)
    by_name = {n.name: n for n in layers}
    kept = sorted(screened[:keep], key=lambda r: layers.index(by_name[r.node]))  # graph order again, for ties
    return (*measured([by_name[r.node] for r in kept], count, len(layers)), *screened[keep:])


def search(
    fp32: onnx.ModelProto,
    emit: Callable[[frozenset[str]], onnx.ModelProto],
    *,
    target: str,
    budget: Thresholds,
    max_excluded: int,
    crops: np.ndarray,
    reference: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[BudgetSearch, onnx.ModelProto]:
    """The file with the fewest ranked layers left out that meets ``budget`` (or the last one tried), and the search;
    ``reference``: the FP32 graph's logits on ``crops``, where the caller has them."""
    say = progress or (lambda _m: None)
    started = time.perf_counter()
    evaluator = Evaluator(fp32, crops, reference)
    say(f"{target}: measuring the INT8 file without {opt('budget')}")
    proto = emit(frozenset())
    first = evaluator.measure(proto)
    evaluator.rebase(proto)
    steps = [Step(None, first, not budget.failures(first))]
    ranking: tuple[Sensitivity, ...] = ()
    ranked_on = min(RANK_CROPS, len(crops))
    if not steps[0].met:
        ranking = rank(proto, fp32, evaluator, count=ranked_on, progress=lambda m: say(f"{target}: {m}"))
        kept: frozenset[str] = frozenset()
        best = first
        for k, layer in enumerate(ranking, 1):
            if len(kept) >= max_excluded:
                break
            say(f"{target}: trying layer {k} of {len(ranking)} out of INT8 ({len(kept)} left out so far)")
            trial = emit(kept | {layer.node})
            metrics = evaluator.measure(trial)
            met = not budget.failures(metrics)
            keep = met or metrics.cosine_mean > best.cosine_mean
            steps.append(Step(layer.node, metrics, met, keep))
            if keep:
                kept, best, proto = kept | {layer.node}, metrics, trial
                evaluator.rebase(trial)
            if met:
                break
    found = BudgetSearch(
        target, budget, max_excluded, ranking, tuple(steps), ranked_on, len(crops), time.perf_counter() - started
    )
    return found, proto
