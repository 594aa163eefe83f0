"""The FP16 and INT8 files of the work directory: each INT8 target's Q/DQ file emitted from the calibration table
(to an accuracy budget where one is given), linted, measured against the FP32 graph and recorded; the FP16 file."""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import onnx

from rn50.artifacts import Artifact, WorkDir, atomic_path, sha256_file, versions
from rn50.calibration import budget as int8_budget
from rn50.calibration import lint, qdq_onnxruntime, qdq_tensorrt
from rn50.calibration.quality import LayerError, compare_to_fp32, fp32_reference
from rn50.calibration.ranges import collect_ranges, method_options
from rn50.errors import CheckFailed, UsageError, uninterrupted
from rn50.exporter.layer_names import layer_label, module_names, residual_names
from rn50.exporter.onnx_file import fp32_artifact
from rn50.feeds import DEFAULT_SAMPLE_COUNT
from rn50.machine import VNNI
from rn50.metrics import CLASSIFIER, InputVerdict, input_verdict, thresholds_for
from rn50.onnx_graph import LAYER_OPS, stamp_metadata
from rn50.runtimes.qdq_form import (
    CPU_CLASS_KEY,
    CPU_TARGETS,
    QDQ_ONNXRUNTIME_CPU,
    QDQ_TENSORRT,
    TARGET_KEY,
    QdqForm,
    form_of,
)
from rn50.words import opt

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from rn50.calibration.table import CalibrationTable
    from rn50.metrics import OutputMetrics, Thresholds

log = logging.getLogger(__name__)
EMITTERS: dict[str, Callable[..., onnx.ModelProto]] = {
    QDQ_TENSORRT: qdq_tensorrt.emit,
    QDQ_ONNXRUNTIME_CPU: qdq_onnxruntime.emit,
}
# The quality report's held-apart crops: the ones parity compares on by default, so the quantize step's cosine is
# parity's "file vs FP32" on the same feeds (both the file's own Q/DQ semantics, never one CPU's kernels).
QUALITY_CROPS = DEFAULT_SAMPLE_COUNT


@dataclass(frozen=True)
class QuantizeResult:
    name: str
    path: Path
    precision: str
    target: str
    output: OutputMetrics  # final logits vs the FP32 graph on held-apart crops
    layers: tuple[LayerError, ...]
    notes: tuple[str, ...] = ()
    search: int8_budget.BudgetSearch | None = None  # --budget: the ranking and each step
    form: QdqForm | None = None  # INT8: its integer form and what it was made for
    modules: dict[str, str] = field(default_factory=dict)  # ONNX node → the PyTorch module it computes
    inputs: InputVerdict | None = None  # which of the held-apart crops it gets most wrong

    def layer(self, node: str) -> str:
        """A layer as reports name it: ``layer4.2.conv3 (node_Conv_858)``."""
        return layer_label(node, self.modules)


@dataclass(frozen=True)
class MethodScore:
    """One calibration method's INT8 file for a target, measured on held-apart crops (the file's semantics)."""

    method: str
    output: OutputMetrics


# --method auto chooses on crops 33–64 of the evaluation split: held apart from calibration, and apart from the 32
# that the quantize report and parity judge by default (choosing on the crops that judge would flatter the choice).
CHOICE_CROPS = (QUALITY_CROPS, 2 * QUALITY_CROPS)


def compare_methods(
    workdir: WorkDir,
    tables: dict[str, CalibrationTable],
    targets: list[str],
    *,
    high_precision: str = "fp32",
    classifier: str = int8_budget.CLASSIFIER_PRECISIONS[0],
    cpu_class: str = VNNI,
) -> dict[str, list[MethodScore]]:
    """Per target, each method's file (every layer INT8) against the FP32 graph on the choice crops, best first
    (cosine mean, then worst); the FP32 graph is run once for all."""
    from rn50.samples import sample_crops

    fp32, path = fp32_artifact(workdir)
    model = onnx.load(str(path))
    crops = sample_crops(CHOICE_CROPS[1], split="evaluation")[CHOICE_CROPS[0] :]
    reference = fp32_reference(model, crops, layers=False)
    classes = workdir.head == CLASSIFIER
    for table in tables.values():
        table.check_model(fp32.sha256)
    out = {}
    for target in targets:
        precision = high_precision if target == QDQ_TENSORRT else "fp32"
        scores = [
            MethodScore(
                method,
                compare_to_fp32(
                    reference,
                    emitter(model, table, target, precision, classifier, cpu_class)(frozenset()),
                    crops,
                    classes=classes,
                ).output,
            )
            for method, table in tables.items()
        ]
        out[target] = sorted(scores, key=lambda s: (-s.output.cosine_mean, -s.output.cosine_min))
    return out


def layer_nodes(layers: tuple[str, ...], model: onnx.ModelProto, modules: dict[str, str]) -> frozenset[str]:
    """The ONNX nodes of ``layers``, each named by its PyTorch module (``conv1``, ``layer4.2.conv3``; a residual Add
    ``layer1.0.add``) or its node."""
    nodes = {n.name for n in model.graph.node if n.op_type in (*LAYER_OPS, "Add")}
    by_module = {m: n for n, m in modules.items()}
    found, unknown = set(), []
    for layer in layers:
        node = by_module.get(layer, layer if layer in nodes else None)
        if node is None:
            unknown.append(layer)
        else:
            found.add(node)
    if unknown:
        known = sorted(by_module) or sorted(nodes)
        raise UsageError(
            f"no Conv/Gemm layer or residual Add {', '.join(unknown)} in the model",
            fix=f"name layers by PyTorch module or ONNX node, e.g. {', '.join(known[:4])}",
        )
    return frozenset(found)


def module_names_of(workdir: WorkDir, model: onnx.ModelProto) -> dict[str, str]:
    """The FP32 graph's Conv/Gemm nodes → PyTorch module names, and its residual Adds → ``<block>.add``, from the
    work directory's weights; empty (nodes named alone) where the weights cannot be read."""
    from rn50.weights import workdir_model

    try:
        names = module_names(model, workdir_model(workdir))
    except (UsageError, OSError, RuntimeError) as e:
        log.info("layers are named by ONNX node only: %s", e)
        return {}
    return names | residual_names(model, names)


def _write_onnx(workdir: WorkDir, proto: onnx.ModelProto, filename: str) -> tuple[Path, str]:
    target = workdir.path(filename)
    with atomic_path(target) as tmp:
        onnx.save_model(proto, str(tmp))
    return target, sha256_file(target)


def emitter(
    model: onnx.ModelProto,
    table: CalibrationTable,
    target: str,
    high_precision: str = "fp32",
    classifier: str = int8_budget.CLASSIFIER_PRECISIONS[0],
    cpu_class: str = VNNI,
    keep_float: frozenset[str] = frozenset(),
) -> Callable[[frozenset[str]], onnx.ModelProto]:
    """The target's Q/DQ file with the given Conv/Gemm nodes (and, ``classifier`` "float", the final Gemm; and the
    nodes of ``keep_float``, always) left out of INT8, stamped and linted; a CPU target's file is made for CPUs of
    ``cpu_class``."""
    if target not in EMITTERS:
        raise UsageError(f"unknown {opt('target')} {target!r}", fix=f"use {', '.join(EMITTERS)} or all")
    head = int8_budget.classifier(model)
    fixed = (frozenset({head}) if classifier == "float" and head is not None else frozenset()) | keep_float
    make = functools.partial(EMITTERS[target], cpu_class=cpu_class) if target in CPU_TARGETS else EMITTERS[target]

    def emit(exclude: frozenset[str]) -> onnx.ModelProto:
        exclude = exclude | fixed
        proto = make(model, table, exclude)
        meta = {
            "rn50.precision": "int8",
            TARGET_KEY: target,
            "rn50.calibration": table.key,
            "rn50.calibration_method": table.method,
            lint.EXCLUDED_KEY: json.dumps(sorted(exclude)),
        }
        if target in CPU_TARGETS:
            meta[CPU_CLASS_KEY] = cpu_class
        if target == QDQ_TENSORRT:
            if high_precision == "fp16":
                proto = qdq_tensorrt.in_fp16(proto)
            meta["rn50.high_precision"] = high_precision
        stamp_metadata(proto, meta)
        for warning in lint.check(proto, target):  # before anything is written
            log.warning("%s", warning)
        onnx.checker.check_model(proto)
        return proto

    return emit


def make_int8_files(
    workdir: WorkDir,
    tables: Mapping[str, CalibrationTable],
    *,
    budget: Thresholds | None = None,
    max_excluded: int = int8_budget.DEFAULT_MAX_EXCLUDED,
    high_precision: str = "fp32",
    classifier: str = int8_budget.CLASSIFIER_PRECISIONS[0],
    cpu_class: str = VNNI,
    progress: Callable[[str], None] | None = None,
    keep_float: tuple[str, ...] = (),
) -> list[QuantizeResult]:
    """Each target's Q/DQ file from its calibration table (``tables``: target → table; with ``budget``: the fewest
    sensitive layers left out that meet it; ``keep_float``: layers, by PyTorch module or ONNX node, left out whatever
    the budget), made and checked before it is written. A target whose budget cannot be met gets no file; the others'
    files are written all the same, and then :class:`BudgetMissed` says which missed (carrying what was written)."""
    from rn50.samples import crop_names, sample_crops

    fp32, path = fp32_artifact(workdir)
    for table in tables.values():
        table.check_model(fp32.sha256)
    model = onnx.load(str(path))
    modules = module_names_of(workdir, model)
    floats = layer_nodes(keep_float, model, modules)
    made: list[tuple[str, onnx.ModelProto, int8_budget.BudgetSearch | None]] = []
    missed: list[tuple[str, str]] = []  # (problem, fix) of each target whose budget was not met
    crops = sample_crops(int8_budget.BUDGET_CROPS, split="evaluation") if budget is not None else None
    # The FP32 logits the search measures against, once for every target.
    logits = int8_budget.Evaluator.run(model, crops, [])[0] if crops is not None else None
    for target, table in tables.items():
        emit = emitter(
            model, table, target, high_precision if target == QDQ_TENSORRT else "fp32", classifier, cpu_class, floats
        )
        if budget is None or crops is None:
            made.append((target, emit(frozenset()), None))
            continue
        found, proto = int8_budget.search(
            model,
            emit,
            target=target,
            budget=budget,
            max_excluded=max_excluded,
            crops=crops,
            reference=logits,
            progress=progress,
        )
        if not found.met:
            exhausted = len(found.steps) - 1 == len(found.ranking)
            fix = (
                f"loosen {opt('budget')}: every ranked layer was tried"
                if exhausted
                else f"raise {opt('max_excluded')} (now {max_excluded}; {len(found.ranking)} layers are ranked) or "
                "loosen "
                f"{opt('budget')}"
            )
            missed.append(
                (f"{target}: {found.summary()}; still failing: {'; '.join(budget.failures(found.final))}", fix)
            )
            continue
        made.append((target, proto, found))
    crops = sample_crops(QUALITY_CROPS, split="evaluation")
    reference = fp32_reference(model, crops)
    classes = workdir.head == CLASSIFIER
    results = []
    for target, proto, search in made:
        name, table = f"onnx-int8-{target}", tables[target]
        quality = compare_to_fp32(reference, proto, crops, classes=classes)  # measured before the file lands
        output, layers = quality.output, quality.layers
        excluded = sorted(lint.excluded_of(proto))
        notes = (search.summary(),) if search is not None else ()
        params = {
            "target": target,
            "method": table.method,
            "options": table.options,
            "table": table.key,
            "calibration_images": table.images,
            "classifier": classifier,
            "excluded": excluded,
        }
        if keep_float:
            params["keep_float"] = list(keep_float)
        if target == QDQ_TENSORRT:
            params["high_precision"] = high_precision
        if target in CPU_TARGETS:
            params["cpu_class"] = cpu_class
        if budget is not None:
            params["budget"] = budget.describe()
        with uninterrupted():  # each file and its manifest entry land together, as it is made
            out_path, digest = _write_onnx(workdir, proto, path.name.replace(".fp32.onnx", f".int8.{target}.onnx"))
            workdir.record(
                Artifact(
                    name,
                    out_path.name,
                    "onnx",
                    "int8",
                    digest,
                    fp32.sha256,
                    params,
                    versions(),
                    extra={"cosine_mean": output.cosine_mean, "sqnr_db": output.sqnr_db},
                )
            )
        results.append(
            QuantizeResult(
                name,
                out_path,
                "int8",
                target,
                output,
                tuple(layers),
                notes,
                search,
                form_of(proto),
                modules,
                input_verdict(quality.inputs, crop_names(QUALITY_CROPS), thresholds_for("int8")),
            )
        )
    if missed:
        written = [r.name for r in results]
        raise BudgetMissed(
            "; ".join(problem for problem, _ in missed)
            + (f" (no file for it; written: {', '.join(written)})" if written else " (nothing was written)"),
            fix=missed[0][1],
            written=results,
        )
    return results


class BudgetMissed(CheckFailed):
    """--budget not met for some target: no file for it. ``written`` holds the results of the targets that met it."""

    def __init__(self, problem: str, *, fix: str, written: list[QuantizeResult]):
        super().__init__(problem, fix=fix)
        self.written = written


def make_fp16_file(workdir: WorkDir) -> QuantizeResult:
    from rn50 import feeds as feed_sources
    from rn50.exporter.fp16 import to_fp16
    from rn50.samples import sample_crops

    fp32, path = fp32_artifact(workdir)
    model = onnx.load(str(path))
    guard = feed_sources.samples(8, split="calibration")
    ranges = collect_ranges(path, guard, "minmax", method_options("minmax"), batch=8, warn_small=False)
    proto, kept = to_fp16(model, ranges)
    onnx.checker.check_model(proto)
    stamp_metadata(proto, {"rn50.precision": "fp16", "rn50.fp32_nodes": json.dumps(kept)})
    crops = sample_crops(QUALITY_CROPS, split="evaluation")
    reference = fp32_reference(model, crops, layers=False)
    quality = compare_to_fp32(reference, proto, crops, classes=workdir.head == CLASSIFIER)  # before it lands
    output = quality.output
    with uninterrupted():  # the file and its manifest entry land together
        out_path, digest = _write_onnx(workdir, proto, path.name.replace(".fp32.onnx", ".fp16.onnx"))
        workdir.record(
            Artifact(
                "onnx-fp16",
                out_path.name,
                "onnx",
                "fp16",
                digest,
                fp32.sha256,
                {"io": "float32", "fp32_nodes": kept},
                versions(),
                extra={"cosine_mean": output.cosine_mean},
            )
        )
    return QuantizeResult("onnx-fp16", out_path, "fp16", "any", output, (), tuple(f"kept in FP32: {n}" for n in kept))
