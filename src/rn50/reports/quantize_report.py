"""quantize-report.json, quantize-report.md and, after ``--budget``, quantize-budget.png: per artifact, the logits
and each Conv/Gemm output against the FP32 graph on held-apart crops; the budget search's ranking and steps."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from rn50.artifacts import atomic_write_bytes, atomic_write_text
from rn50.charts import png, pyplot
from rn50.exporter.layer_names import layer_label
from rn50.jsonio import jsonable, read_json
from rn50.metrics import fmt
from rn50.reports.render import Section, to_markdown
from rn50.words import cmd, opt

if TYPE_CHECKING:
    from pathlib import Path

    from rn50.artifacts import WorkDir
    from rn50.calibration.budget import BudgetSearch
    from rn50.calibration.quantized import QuantizeResult

REPORT = "quantize-report.json"
BUDGET_CHART = "quantize-budget.png"


def summary_sections(results: list[QuantizeResult]) -> list[Section]:
    """One row per file made: its logits against the FP32 graph and its worst layer; its form and budget search.
    What a terminal shows, and the head of quantize-report.md."""
    from rn50.calibration.quantized import QUALITY_CROPS

    part = Section(
        f"Artifacts vs the FP32 graph ({QUALITY_CROPS} held-apart sample crops, parity's default set; each file's "
        "own Q/DQ semantics)",
        "quantize-summary",
        header=["artifact", "file", "cos mean", "cos worst", "SQNR dB", "top-1", "worst layer (SQNR dB)"],
    )
    for r in results:
        o = r.output
        worst = f"{r.layer(r.layers[0].node)} ({r.layers[0].sqnr_db:.1f})" if r.layers else "–"
        part.rows.append(
            [
                r.name,
                r.path.name,
                f"{o.cosine_mean:.6f}",
                f"{o.cosine_min:.6f}",
                f"{o.sqnr_db:.1f}",
                fmt(o.top1_agreement, ".3f"),
                worst,
            ]
        )
        if r.form is not None:
            part.bullets.append(f"{r.name}: {r.form.describe()}")
        if r.inputs is not None:
            part.bullets.append(f"{r.name}, inputs (INT8 bounds): {r.inputs.line()}")
        if r.search is not None:
            part.bullets.append(
                f"{r.name}: {r.search.summary()}"
                + (f"; left out of INT8: {', '.join(map(r.layer, r.search.excluded))}" if r.search.excluded else "")
            )
    return [part]


def quality_sections(results: list[QuantizeResult]) -> list[Section]:
    """quantize-report.md's sections: the summary, then per artifact its logits and each Conv/Gemm output against the
    FP32 graph."""
    parts = summary_sections(results)
    parts[0].paragraphs.append(
        "Final logits and each Conv/Gemm output against the FP32 graph, as each file says it computes: its own "
        "Q/DQ semantics (ONNX Runtime's CPU provider with graph optimizations off), the same on every CPU. That is "
        'parity\'s "file vs FP32"; parity also measures each runtime against the file ("runtime vs file").'
    )
    for r in results:
        o = r.output
        part = Section(
            f"{r.name} ({r.path.name})",
            r.name,
            paragraphs=[
                f"Logits: cosine mean {o.cosine_mean:.6f}, worst {o.cosine_min:.6f}, SQNR {o.sqnr_db:.1f} dB, "
                f"top-1 agreement {fmt(o.top1_agreement, '.3f')}."
            ],
            bullets=list(r.notes),
        )
        if r.form is not None:
            part.paragraphs.append(f"Form: {r.form.describe()}.")
        if r.layers:
            part.paragraphs.append("Per layer, worst first:")
            part.header = ["layer", "op", "SQNR dB", "cosine"]
            part.rows = [[r.layer(x.node), x.op, f"{x.sqnr_db:.1f}", f"{x.cosine_mean:.5f}"] for x in r.layers]
        parts.append(part)
    return parts


def search_dict(search: BudgetSearch, modules: dict[str, str] | None = None) -> dict[str, Any]:
    """The search as quantize-report.json holds it (and as report.md reads it back); ``modules``: the PyTorch module
    of each ONNX node it names."""
    bounds = {k: v for k, v in asdict(search.budget).items() if v is not None}
    return {
        "target": search.target,
        "budget": search.budget.describe(),
        "bounds": bounds,
        "max_excluded": search.max_excluded,
        "met": search.met,
        "summary": search.summary(),
        "excluded": list(search.excluded),
        "ranked_on": search.ranked_on,
        "checked_on": search.checked_on,
        "seconds": search.seconds,
        "ranking": [asdict(r) for r in search.ranking],
        "modules": {n: m for n, m in (modules or {}).items() if n in {r.node for r in search.ranking}},
        "steps": [
            {"left_out": s.left_out, "met": s.met, "kept": s.kept, "output": s.output.to_dict()} for s in search.steps
        ],
    }


def budget_sections(searches: list[RecordedSearch], *, image: str | None = None) -> list[Section]:
    """Per target: the budget, the metric after each step, and the sensitivity ranking."""
    out = []
    for i, recorded in enumerate(searches):
        s, modules = recorded.search, recorded.modules
        part = Section(f"INT8 budget — {s.target}", f"budget-{s.target}", paragraphs=[s.summary() + "."])
        if i == 0 and image:
            part.images.append(("logits' cosine mean to FP32 after each layer left out of INT8", image))
        part.paragraphs.append(
            f"After each step ({s.checked_on} held-apart crops; step 0 is the INT8 file without {opt('budget')}; "
            "a layer "
            "that does not raise the cosine mean goes back to INT8):"
        )
        part.header = ["step", "layer tried in float", "kept out", "cos mean", "cos worst", "top-1", "budget"]
        part.rows = [
            [
                str(k),
                layer_label(st.left_out, modules) if st.left_out else "–",
                "–" if st.left_out is None else "yes" if st.kept else "no, back to INT8",
                f"{st.output.cosine_mean:.6f}",
                f"{st.output.cosine_min:.6f}",
                fmt(st.output.top1_agreement, ".3f"),
                "met" if st.met else "not met",
            ]
            for k, st in enumerate(s.steps)
        ]
        out.append(part)
        if s.ranking:
            crops = [r.crops for r in s.ranking]
            ranking = Section(
                f"Layer sensitivity — {s.target}",
                f"sensitivity-{s.target}",
                paragraphs=[
                    "Each layer (a residual Add: its shortcut) put back in float alone, every other quantized "
                    "layer INT8; most sensitive first. "
                    + (
                        f"Every layer measured on {min(crops)} held-apart crops, the {crops.count(s.ranked_on)} "
                        f"most sensitive of those again on {s.ranked_on} (ranked first). "
                        if min(crops) < s.ranked_on
                        else f"Measured on {s.ranked_on} held-apart crops. "
                    )
                    + "The search leaves layers out in this order."
                ],
                header=["rank", "layer", "op", "crops", "cos mean, this layer in float", "gain"],
            )
            ranking.rows = [
                [
                    str(k),
                    layer_label(r.node, modules),
                    r.op,
                    str(c),
                    f"{r.cosine_mean:.6f}",
                    f"{r.gain:+.6f}",
                ]
                for k, (r, c) in enumerate(zip(s.ranking, crops, strict=True), 1)
            ]
            out.append(ranking)
    return out


def budget_chart(searches: list[RecordedSearch]) -> bytes | None:
    plt = pyplot("budget chart")
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for s in (recorded.search for recorded in searches):
        ys = [st.output.cosine_mean for st in s.steps]
        line = ax.plot(range(len(ys)), ys, marker="o", markersize=3, linewidth=0.8, label=f"{s.target} (each step)")[0]
        back = [(k, y) for k, (y, st) in enumerate(zip(ys, s.steps, strict=True)) if not st.kept]
        if back:
            ax.plot(
                *zip(*back, strict=True),
                linestyle="none",
                marker="x",
                color=line.get_color(),
                label=f"{s.target}: put back in INT8",
            )
    bound = searches[0].search.budget.min_cosine_mean
    if bound is not None:
        ax.axhline(bound, color="grey", linestyle="--", linewidth=1, label=f"budget: mean cos ≥ {bound}")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel("step (one ranked layer tried in float per step)")
    ax.set_ylabel("logits' cosine mean to FP32")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png(fig, dpi=100)


@dataclass(frozen=True)
class RecordedSearch:
    """A budget search as quantize-report.json records it: the search and the PyTorch module of each node it names."""

    search: BudgetSearch
    modules: dict[str, str]


def search_from_dict(data: dict[str, Any]) -> RecordedSearch:
    from rn50.calibration.budget import BudgetSearch, Sensitivity, Step
    from rn50.metrics import OutputMetrics, Thresholds

    steps = tuple(Step(s["left_out"], OutputMetrics.from_dict(s["output"]), s["met"], s["kept"]) for s in data["steps"])
    search = BudgetSearch(
        data["target"],
        Thresholds(**data["bounds"]),
        data["max_excluded"],
        tuple(Sensitivity(**r) for r in data["ranking"]),
        steps,
        data["ranked_on"],
        data["checked_on"],
        data["seconds"],
    )
    return RecordedSearch(search, dict(data.get("modules", {})))


def load(path: Path) -> list[RecordedSearch]:
    """The budget searches quantize-report.json records (none when quantize ran without --budget)."""
    from rn50.errors import UsageError

    data = read_json(path, what="quantize report", fix=f"run {cmd('quantize')} again")
    if not isinstance(data, list):
        raise UsageError(f"{path} is not a quantize report", fix=f"run {cmd('quantize')} again")
    try:
        return [search_from_dict(r["budget"]) for r in data if isinstance(r, dict) and r.get("budget")]
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"{path} is a malformed quantize report ({e})", fix=f"run {cmd('quantize')} again") from None


def write_quality_report(workdir: WorkDir, results: list[QuantizeResult]) -> list[Path]:
    data = jsonable(
        [
            {
                "name": r.name,
                "path": str(r.path),
                "precision": r.precision,
                "target": r.target,
                "output": r.output.to_dict(),
                "layers_worst_first": [asdict(x) for x in r.layers],
                "notes": list(r.notes),
                "budget": search_dict(r.search, r.modules) if r.search is not None else None,
                "form": asdict(r.form) if r.form is not None else None,
                "inputs": asdict(r.inputs) if r.inputs is not None else None,
            }
            for r in results
        ]
    )
    paths = [workdir.path(REPORT), workdir.path("quantize-report.md")]
    searches = [RecordedSearch(r.search, r.modules or {}) for r in results if r.search is not None]
    image = budget_chart(searches) if searches else None
    if image is not None:
        atomic_write_bytes(workdir.path(BUDGET_CHART), image)
        paths.append(workdir.path(BUDGET_CHART))
    atomic_write_text(paths[0], json.dumps(data, indent=2) + "\n")
    parts = quality_sections(results) + budget_sections(searches, image=BUDGET_CHART if image is not None else None)
    atomic_write_text(paths[1], to_markdown("rn50 quantization report", parts))
    return paths
