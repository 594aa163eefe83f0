"""parity.md, parity.png and parity.json (its form is ``rn50.results.parity_results``'); the parity part of every
report."""

from __future__ import annotations

import json
import logging
import math
import re
from typing import TYPE_CHECKING

import numpy as np

from rn50.artifacts import atomic_write_bytes, atomic_write_text
from rn50.calibration.outliers import DEPART_FACTOR, DEPARTS
from rn50.charts import png, pyplot
from rn50.metrics import RUNTIME_VS_FILE, fmt
from rn50.reports.render import Section, machine_line, to_markdown
from rn50.results.parity_results import REPORT, PairResult, ParityReport, to_dict
from rn50.runtimes.registry import double_notes
from rn50.words import cmd

if TYPE_CHECKING:
    from pathlib import Path

    from rn50.calibration.outliers import InputCause

log = logging.getLogger(__name__)
SHOWN = 3  # layers named per failing input


def _outside(c: InputCause) -> str:
    if not c.outside:
        return "nowhere: within every range"
    shown = ", ".join(f"{e.node} {e.ratio:.1f}×" for e in c.outside[:SHOWN])
    more = len(c.outside) - SHOWN
    return shown + (f" (+{more} more layers)" if more > 0 else "")


def _departs(c: InputCause) -> str:
    if c.departs is not None and c.departs_cosine is not None:
        return f"{c.departs} (cos {c.departs_cosine:.3f})"
    low = f"; lowest {c.lowest} (cos {c.lowest_cosine:.3f})" if c.lowest and c.lowest_cosine is not None else ""
    return "no layer departs from the typical error" + low


def _tried(r: PairResult) -> str:
    """The fix, as rn50 checked it on this row's own inputs."""
    t = r.tried_fix
    assert t is not None
    layers = ",".join(t.keep_float)
    verdict = "**passes**" if not t.failures else "still fails: " + "; ".join(t.failures)
    return (
        f"**Checked** ({r.label}): with {layers} kept in float (`{cmd('quantize', int8=True, keep_float=layers)}`), "
        "the "
        f"file computes cos mean {t.metrics.cosine_mean:.4f}, worst {t.metrics.cosine_min:.4f} against PyTorch on "
        f"the same {t.metrics.samples} inputs — {verdict}."
    )


def _int8_fix(rows: list[PairResult]) -> str:
    """What would fix it, from what was found (a suggestion: rn50 has not tried it on these inputs; the benchmark
    bench_int8_outliers.py measures each on a reproduction)."""
    worst = max((e.ratio for r in rows for c in r.causes for e in c.outside), default=0.0)
    few = all(r.input_verdict is not None and r.input_verdict.few for r in rows)
    example = f"`{cmd('quantize', int8=True, keep_float='LAYER')}`"
    departs = list(dict.fromkeys(c.departs.split(" (")[0] for r in rows for c in r.causes if c.departs))
    keep = f"`{cmd('quantize', int8=True, keep_float=','.join(departs))}`" if departs else None
    if worst > 1.5:
        return (
            f"**What would fix it** (suggested, not yet tried by rn50 on these inputs): they drive activations up to "
            f"{worst:.1f}× past the calibrated ranges"
            + (", and only a few inputs fail" if few else "")
            + (
                f"; their error departs first at {', '.join(departs)}: leave that layer out of INT8 ({keep}), which "
                "keeps its input unclipped"
                if keep
                else ""
            )
            + f"; or calibrate on images like them (`{cmd('quantize', int8=True, images='DIR')}` with such images "
            "among the "
            "calibration set) — which widens every range, so check the other inputs after it."
        )
    return (
        "**What would fix it** (suggested, not yet tried by rn50 on these inputs): the failing inputs stay within "
        "the calibrated ranges, so the error is the ranges' resolution, not clipping: leave the layers where the "
        f"error departs out of INT8 ({keep or example}), or let the budget "
        f"search choose them (`{cmd('quantize', int8=True, budget='min_cosine_mean=0.998')}`)."
    )


def verdict_text(r: PairResult) -> str:
    return {
        "pass": "pass",
        "fail": "FAIL: " + "; ".join(r.failures),
        "skipped": f"skipped: {r.reason}",
        "error": f"error: {r.reason}",
    }[r.status]


def thresholds_line(report: ParityReport) -> str:
    """The bounds each precision (and the fidelity check) was judged by in this run, once per report."""
    used = {r.precision: r.thresholds for r in report.ran}
    fidelity = next((r.fidelity_thresholds for r in report.ran if r.fidelity_thresholds), None)
    if fidelity:
        used["fidelity (INT8 runtime vs its file)"] = fidelity
    return "Thresholds: " + "; ".join(f"{k}: {v}" for k, v in used.items()) + "." if used else ""


def fidelity_verdict(r: PairResult) -> str:
    deviates = [f for f in r.failures if f.startswith(RUNTIME_VS_FILE)]
    return f"FAIL: {'; '.join(deviates)} — {r.cause}; fix: {r.fix}" if deviates else "pass (faithful to its file)"


def by_reason(results: list[PairResult]) -> dict[str, list[PairResult]]:
    """Results grouped by the reason they did not run (one row a reason, not one a pair)."""
    out: dict[str, list[PairResult]] = {}
    for r in results:
        out.setdefault(str(r.reason), []).append(r)
    return out


def _divergence_cells(r: PairResult) -> list[str]:
    d = r.divergence
    assert d is not None
    if d.note:
        return [f"not located: {d.note}", "", ""]
    first = f"{d.first} (cos {d.first_cosine:.4f})" if d.first and d.first_cosine is not None else "none departs"
    lowest = min(d.layers, key=lambda x: x[1]) if d.layers else None
    return [first, str(d.inputs), f"{lowest[0]} ({lowest[1]:.4f})" if lowest else "–"]


def layers_plot(report: ParityReport) -> bytes | None:
    """Per failing row, the median cosine to PyTorch of each layer on its failing inputs (and on passing ones)."""
    rows = [r for r in report.ran if r.divergence is not None and r.divergence.layers]
    plt = pyplot("per-layer chart") if rows else None
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    for r in rows:
        assert r.divergence is not None
        ys = [c for _, c, _ in r.divergence.layers]
        line = ax.plot(range(len(ys)), ys, marker="o", markersize=2.5, linewidth=0.9, label=f"{r.label} (failing)")[0]
        ax.plot(
            range(len(ys)),
            [t for _, _, t in r.divergence.layers],
            linestyle="--",
            linewidth=0.8,
            color=line.get_color(),
            label=f"{r.label} (passing)",
        )
    ax.axhline(DEPARTS, color="#8c959f", linewidth=0.8, linestyle=":")
    ax.set_xlabel("layer (graph order)")
    ax.set_ylabel("cosine to PyTorch")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig, dpi=110)


def sections(report: ParityReport, *, image: str | None = None, layers_image: str | None = None) -> list[Section]:
    """parity.md's sections, also the parity part of report.md/html (``image``: the error plot's file name)."""
    ref, feeds = report.reference, report.feeds
    main = Section(
        "Verdicts",
        "verdicts",
        paragraphs=[
            f"{report.verdict_line()}. Reference: {ref.label} on {ref.device}; feeds: {feeds.description}.",
            thresholds_line(report),
        ]
        + (
            [
                "Head: an **embedding** (as export recorded it): judged by cosine and error only; top-1, top-5 and "
                f"accuracy mean nothing for it and are not computed (`{cmd('export', head='classifier')}` if it is a "
                "classifier)."
            ]
            if report.head == "embedding"
            else []
        ),
        notes=[f"warning: {w}" for w in feeds.warnings]
        + [f"note: {n}" for n in double_notes(r.runtime for r in report.results)],
        header=[
            "runtime · artifact",
            "precision",
            "max abs",
            "cos mean",
            "cos worst",
            "SQNR dB",
            "top-1 agr",
            "top-5 ovl",
            "verdict",
        ],
    )
    for r in report.results:
        m = r.metrics
        if r.status == "skipped":
            continue  # listed under "Not run here, and why"
        if m is None:
            main.rows.append([r.label, r.precision, "", "", "", "", "", "", verdict_text(r)])
            continue
        main.rows.append(
            [
                r.label,
                r.precision,
                f"{m.max_abs:.3g}",
                f"{m.cosine_mean:.6f}",
                f"{m.cosine_min:.6f}",
                fmt(m.sqnr_db if math.isfinite(m.sqnr_db) else None, ".1f"),
                fmt(m.top1_agreement, ".3f"),
                fmt(m.top5_overlap, ".3f"),
                verdict_text(r),
            ]
        )
    ran_on = {r.runtime: r.device for r in report.ran if r.device}
    if ran_on:
        main.bullets += [f"{k} ran on {v}" for k, v in ran_on.items()]
    if image:
        main.images.append(("error distribution per runtime", image))
    parts = [main]
    int8 = [r for r in report.ran if r.fidelity is not None and r.quantization is not None]
    if int8:
        parts.append(
            Section(
                "INT8: the file's error and the runtime's",
                "int8-fidelity",
                paragraphs=[
                    "Each INT8 result against a third reference: its Q/DQ file's own semantics (the file run as "
                    "written, Q/DQ and float operators, by ONNX Runtime's CPU provider with graph optimizations off; "
                    "for an INT8 AOTInductor package, its PT2E-quantized program run by PyTorch eagerly; the same on "
                    "every CPU). **File vs FP32** is the quantization error (calibration's business, judged by the "
                    "INT8 "
                    "thresholds); **runtime vs file** is the runtime's own error (saturating kernels, a fusion that "
                    "changes "
                    "the math, a wrong build), judged by the fidelity thresholds."
                ],
                header=[
                    "runtime · artifact",
                    "file vs FP32: cos mean",
                    "cos worst",
                    "runtime vs file: cos mean",
                    "cos worst",
                    "max abs",
                    "fidelity",
                ],
                rows=[
                    [
                        r.label,
                        f"{r.quantization.cosine_mean:.6f}",
                        f"{r.quantization.cosine_min:.6f}",
                        f"{r.fidelity.cosine_mean:.6f}",
                        f"{r.fidelity.cosine_min:.6f}",
                        f"{r.fidelity.max_abs:.3g}",
                        fidelity_verdict(r),
                    ]
                    for r in int8
                    if r.quantization is not None and r.fidelity is not None
                ],
            )
        )
    failing = [r for r in report.ran if r.status == "fail" and r.input_verdict is not None]
    if failing:
        parts.append(
            Section(
                "Failing rows: which inputs",
                "failing-inputs",
                paragraphs=[
                    "Per failing row, the inputs below its worst-sample cosine bound (for an INT8 row whose file "
                    "fails, the file's own error against FP32), whether the verdict hangs on a few inputs or many, "
                    "and the worst inputs by name; parity.json keeps every input's cosine and max abs."
                ],
                header=["runtime · artifact", "inputs"],
                rows=[[r.label, r.input_verdict.line()] for r in failing if r.input_verdict is not None],
            )
        )
    located = [r for r in report.ran if r.status == "fail" and r.divergence is not None]
    if located:
        parts.append(
            Section(
                "Failing rows: the first layer that departs from PyTorch",
                "divergence",
                paragraphs=[
                    "Each Conv/Gemm output the runtime computed on the row's failing inputs (marked as graph "
                    "outputs, as Polygraphy's `mark all`) against the same layer in PyTorch (a forward hook; a "
                    "BatchNorm folded into a convolution is hooked after it). A layer departs where its cosine "
                    f"falls below {DEPARTS} and its error is {DEPART_FACTOR:g}× that on the row's passing inputs."
                ],
                header=["runtime · artifact", "first layer that departs", "inputs", "lowest layer (median cos)"],
                rows=[[r.label, *_divergence_cells(r)] for r in located],
            )
        )
        if layers_image:
            parts[-1].images.append(("cosine to PyTorch per layer, failing rows", layers_image))
    explained = [r for r in failing if r.causes]
    if explained:
        parts.append(
            Section(
                "INT8: why those inputs fail, layer by layer",
                "int8-causes",
                paragraphs=[
                    "For each failing input of a failing INT8 row (its Q/DQ file against FP32): the layers whose "
                    "quantized input it drives outside the range the file can represent (× that range: above 1 it "
                    "is clipped), and the first layer whose output on this input departs from the FP32 graph's "
                    f"(cosine below {DEPARTS} and {DEPART_FACTOR:g}× the layer's typical error on inputs that pass)."
                ],
                header=["runtime · artifact", "input", "outside the calibrated range", "error first departs at"],
                rows=[[r.label, c.input, _outside(c), _departs(c)] for r in explained for c in r.causes],
                after=[_int8_fix(explained), *(_tried(r) for r in explained if r.tried_fix is not None)],
            )
        )
    skipped = [r for r in report.results if r.status == "skipped"]
    if skipped:
        parts.append(
            Section(
                "Not run here, and why",
                "parity-not-run",
                header=["why", "runtime · artifact"],
                rows=[[reason, ", ".join(r.label for r in rs)] for reason, rs in by_reason(skipped).items()],
            )
        )
    if feeds.labelled:
        rows = [["reference", ref.label, fmt(ref.accuracy_top1, ".4f"), fmt(ref.accuracy_top5, ".4f")]]
        rows += [[r.runtime, r.artifact, fmt(r.accuracy_top1, ".4f"), fmt(r.accuracy_top5, ".4f")] for r in report.ran]
        parts.append(Section("Accuracy", "accuracy", header=["runtime", "artifact", "top-1", "top-5"], rows=rows))
    return parts


def markdown(report: ParityReport, *, image: str | None = None, layers_image: str | None = None) -> str:
    parts = sections(report, image=image, layers_image=layers_image)
    return to_markdown(str(cmd("parity")), [*parts, Section("", after=[machine_line(report.machine)])])


def _abs_limit(thresholds: str) -> float | None:
    """The max-abs bound in a result's thresholds line ("…, abs≤0.001"), if it has one."""
    found = re.search(r"abs≤([0-9.eE+-]+)", thresholds)
    return float(found.group(1)) if found else None


def error_plot(errors: dict[str, np.ndarray], results: dict[str, PairResult] | None = None) -> bytes | None:
    """Box plot of |candidate − reference| per runtime (log scale), each box coloured and labelled by its verdict,
    with its max-abs threshold marked where it has one; None when matplotlib is absent."""
    if not errors:
        return None
    plt = pyplot("error plot")
    if plt is None:
        return None
    results = results or {}
    labels = list(errors)
    data = [np.maximum(errors[k], 1e-12) for k in labels]
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(labels) + 1.6))
    boxes = ax.boxplot(data, vert=False, showfliers=False, whis=(1, 99), patch_artist=True)
    colours = {"pass": "#cfe9d6", "fail": "#f4c7c3", "error": "#f4c7c3"}
    marked = False
    for i, (label, box) in enumerate(zip(labels, boxes["boxes"], strict=True), start=1):
        r = results.get(label)
        box.set_facecolor(colours.get(r.status, "#e6e6e6") if r is not None else "#e6e6e6")
        limit = _abs_limit(r.thresholds) if r is not None else None
        if limit is not None:
            ax.plot(
                [limit, limit],
                [i - 0.35, i + 0.35],
                color="#b3261e",
                linewidth=2,
                label=None if marked else "max-abs threshold",
            )
            marked = True
    ticks = [
        f"{k}  {'✓' if results[k].status == 'pass' else '✗ ' + results[k].status}" if k in results else k
        for k in labels
    ]
    ax.set_yticks(range(1, len(labels) + 1), ticks)
    ax.set_xscale("log")
    ax.set_xlabel("|output − PyTorch FP32| per logit (box: quartiles, whiskers: 1st–99th percentile)")
    ax.set_title(f"{cmd('parity')}: error per runtime (green: pass, red: fail)")
    if marked:
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return png(fig, dpi=110)


PLOT = "parity.png"
LAYERS_PLOT = "parity-layers.png"


def write(report: ParityReport, errors: dict[str, np.ndarray], folder: Path) -> list[Path]:
    written = [folder / REPORT, folder / "parity.md"]
    image = error_plot(errors, {r.label: r for r in report.results})
    if image is not None:
        atomic_write_bytes(folder / PLOT, image)
        written.append(folder / PLOT)
    layers = layers_plot(report)
    if layers is not None:
        atomic_write_bytes(folder / LAYERS_PLOT, layers)
        written.append(folder / LAYERS_PLOT)
    atomic_write_text(written[0], json.dumps(to_dict(report), indent=2) + "\n")
    atomic_write_text(
        written[1],
        markdown(
            report, image=PLOT if image is not None else None, layers_image=LAYERS_PLOT if layers is not None else None
        ),
    )
    return written
