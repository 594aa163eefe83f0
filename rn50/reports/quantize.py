"""quantize-report.json and quantize-report.md: per artifact, the logits and each Conv/Gemm output against the
FP32 graph on held-apart crops."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING

from rn50.artifacts import atomic_write_text
from rn50.jsonio import jsonable
from rn50.reports.render import Section, to_markdown

if TYPE_CHECKING:
    from pathlib import Path

    from rn50.artifacts import WorkDir
    from rn50.calibration.run import QuantizeResult


def quality_sections(results: list[QuantizeResult]) -> list[Section]:
    """quantize-report.md's sections: per artifact, its logits and each Conv/Gemm output against the FP32 graph."""
    parts = [Section("", paragraphs=["Final logits and each Conv/Gemm output against the FP32 graph, on held-apart sample crops."])]
    for r in results:
        o = r.output
        part = Section(f"{r.name} ({r.path.name})", r.name,
                       paragraphs=[f"Logits: cosine mean {o.cosine_mean:.6f}, worst {o.cosine_min:.6f}, SQNR {o.sqnr_db:.1f} dB, "
                                   f"top-1 agreement {o.top1_agreement:.3f}."],
                       bullets=list(r.notes))  # fmt: skip
        if r.layers:
            part.paragraphs.append("Per layer, worst first:")
            part.header = ["layer", "op", "SQNR dB", "cosine"]
            part.rows = [[x.node, x.op, f"{x.sqnr_db:.1f}", f"{x.cosine_mean:.5f}"] for x in r.layers]
        parts.append(part)
    return parts


def write_quality_report(workdir: WorkDir, results: list[QuantizeResult]) -> list[Path]:
    data = [{"name": r.name, "path": str(r.path), "precision": r.precision, "target": r.target, "output": r.output.to_dict(),
             "layers_worst_first": [asdict(x) for x in r.layers], "notes": list(r.notes)} for r in results]  # fmt: skip
    paths = [workdir.path("quantize-report.json"), workdir.path("quantize-report.md")]
    atomic_write_text(paths[0], json.dumps(jsonable(data), indent=2) + "\n")
    atomic_write_text(paths[1], to_markdown("rn50 quantization report", quality_sections(results)))
    return paths
