"""The one renderer: every report (parity.md, profile.md, quantize-report.md, report.md and report.html) is a
title and a list of sections, written to Markdown or to a self-contained HTML page here and nowhere else."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


@dataclass
class Section:
    title: str
    anchor: str = ""
    paragraphs: list[str] = field(default_factory=list)  # **bold** is kept in Markdown and becomes <strong>
    notes: list[str] = field(default_factory=list)  # "warning: …" / "note: …" call-outs
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    images: list[tuple[str, str]] = field(default_factory=list)  # (alt text, file name in the report's folder)
    after: list[str] = field(default_factory=list)  # paragraphs after the table


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(title: str, parts: list[Section]) -> str:
    lines = [f"# {title}", ""]
    for s in parts:
        if s.title:
            lines += [f"## {s.title}", ""]
        lines += [p + "\n" for p in s.paragraphs]
        lines += [f"> {n}\n" for n in s.notes]
        if s.header:
            lines += ["| " + " | ".join(s.header) + " |", "|" + "---|" * len(s.header)]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in s.rows]
            lines.append("")
        if s.bullets:
            lines += [f"- {b}" for b in s.bullets] + [""]
        lines += [p + "\n" for p in s.after]
        lines += [f"![{alt}]({name})\n" for alt, name in s.images]
    return "\n".join(lines).rstrip("\n") + "\n"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#1b1f24;
padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.pass{color:#1a7f37;font-weight:600}td.fail{color:#cf222e;font-weight:600}td.skip{color:#9a6700}
blockquote{margin:.5rem 0;padding:.25rem .75rem;border-left:4px solid #d4a72c;background:#fff8c5}
img{max-width:100%;border:1px solid #d0d7de;margin:.5rem 0}
"""


def _inline(text: str) -> str:
    """Escape, then turn **bold** into <strong>."""
    parts = html.escape(text).split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


def _cell_class(text: str) -> str:
    """A verdict or status cell's colour: pass/ok green, fail/error red, skipped/missing yellow."""
    low = text.lower()
    if low.startswith("pass") or low in ("reference", "ok", "ran", "reused"):
        return ' class="pass"'
    if low.startswith(("fail", "error", "broken", "changed", "stale-parent", "bad-sidecar")):
        return ' class="fail"'
    if low.startswith(("skipped", "missing", "unrecorded")) or low == "not run":
        return ' class="skip"'
    return ""


def to_html(title: str, parts: list[Section], folder: Path) -> str:
    """A self-contained page: styles inline, images embedded as data URIs."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for i, s in enumerate(parts):
        anchor = s.anchor or f"section-{i}"
        if s.title:
            body.append(f'<h2 id="{anchor}">{html.escape(s.title)}</h2>')
        body += [f"<p>{_inline(p)}</p>" for p in s.paragraphs]
        body += [f"<blockquote>{_inline(n)}</blockquote>" for n in s.notes]
        if s.header:
            body.append(
                f'<table id="{anchor}-table"><thead><tr>'
                + "".join(f"<th>{html.escape(h)}</th>" for h in s.header)
                + "</tr></thead><tbody>"
            )
            body += [
                "<tr>" + "".join(f"<td{_cell_class(c)}>{html.escape(c)}</td>" for c in row) + "</tr>" for row in s.rows
            ]
            body.append("</tbody></table>")
        if s.bullets:
            body.append("<ul>" + "".join(f"<li>{_inline(b)}</li>" for b in s.bullets) + "</ul>")
        body += [f"<p>{_inline(p)}</p>" for p in s.after]
        for alt, name in s.images:
            data = base64.b64encode((folder / name).read_bytes()).decode()
            body.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def machine_line(machine: dict[str, object]) -> str:
    """The one line every report describes the machine with, from what was recorded (versions, CPU, GPUs)."""
    cpu = machine.get("cpu")
    gpus = machine.get("gpus")
    parts = []
    if isinstance(cpu, dict):
        features = ", ".join(cpu.get("int8_features") or []) or "none"
        parts.append(f"{cpu.get('model')} ({cpu.get('usable_cores')} usable cores; INT8 features: {features})")
    else:
        parts.append(str(machine.get("machine")))
    if machine.get("os"):
        parts.append(str(machine["os"]))
    parts += [
        f"Python {machine.get('python')}",
        f"torch {machine.get('torch')}",
        f"onnxruntime {machine.get('onnxruntime')}",
        f"TensorRT {machine.get('tensorrt') or '—'}",
    ]
    if isinstance(gpus, list) and gpus:
        parts.append(
            "GPU "
            + "; ".join(
                f"{g['name']} (SM clock {g['clocks.sm']}, max {g['clocks.max.sm']}, driver {g['driver_version']})"
                for g in gpus
            )
        )
    else:
        parts.append(f"GPU {machine.get('gpu') or '—'}")
    return "Machine: " + ", ".join(parts) + "."


def _rich_inline(text: str) -> str:
    """Escape rich markup, then turn **bold** into rich's bold."""
    from rich.markup import escape

    parts = escape(text).split("**")
    return "".join(f"[bold]{p}[/bold]" if i % 2 else p for i, p in enumerate(parts))


CELL_STYLES = {' class="pass"': "green", ' class="fail"': "red", ' class="skip"': "yellow"}


# A table cell that is a number (as rn50 formats them: 1,024 · 0.999 · 3.1e-05 · 2.0% · 1.23× · 118.01M · 2.0% ⚠):
# its column is right-aligned on a terminal.
_NUMBER = re.compile(r"^[-+−]?[\d,]*\.?\d+(e[-+]?\d+)?[%×KMGT]?( ⚠)?$")


def to_rich(parts: list[Section]) -> list[object]:
    """The same sections as a terminal shows them (rich renderables): titles, text, tables, lists; an image is named,
    not drawn."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    out: list[object] = []
    for s in parts:
        if s.title:
            out.append(Text(s.title, style="bold"))
        out += [_rich_inline(p) for p in s.paragraphs if p]
        out += [f"[yellow]{_rich_inline(n)}[/]" for n in s.notes]
        if s.header:
            table = Table(show_lines=False, header_style="bold")
            for i, h in enumerate(s.header):
                cells = [row[i] for row in s.rows if i < len(row) and row[i] not in ("", "–", "-")]
                numeric = bool(cells) and all(_NUMBER.match(c) for c in cells)
                table.add_column(h, overflow="fold", justify="right" if numeric else "left")
            for row in s.rows:
                styled = [
                    f"[{CELL_STYLES[_cell_class(c)]}]{escape(c)}[/]" if _cell_class(c) else escape(c) for c in row
                ]
                table.add_row(*styled)
            out.append(table)
        out += [f"  • {_rich_inline(b)}" for b in s.bullets]
        out += [_rich_inline(p) for p in s.after if p]
        out += [f"  ({escape(alt)}: {escape(name)})" for alt, name in s.images]
    return out
