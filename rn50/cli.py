"""The ``rn50`` command line. Only this module prints; the library returns values."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from rn50 import __version__
from rn50.errors import Interrupted, Rn50Error

app = typer.Typer(
    name="rn50",
    help="ResNet-50 from PyTorch to ONNX Runtime and TensorRT engines, with parity and latency proof.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
STATE = {"verbose": False}

F = TypeVar("F", bound=Callable[..., Any])

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Work directory for artifacts and manifest.json.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of tables.")]
DepthOpt = Annotated[int, typer.Option("--depth", help="ResNet depth: 18, 34, 50, 101 or 152.")]
WeightsOpt = Annotated[
    str, typer.Option("--weights", help="'seeded' (deterministic demo weights) or a torchvision-style checkpoint path.")
]


def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and obj != obj or obj in (float("inf"), float("-inf")):
        return None
    return obj


def print_json(obj: Any) -> None:
    out.print_json(json.dumps(_jsonable(obj)))


def handles_errors(fn: F) -> F:
    """One path for every failure: a one-line message and its exit code; a traceback only with --verbose."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Rn50Error as e:
            if STATE["verbose"]:
                err.print_exception()
            err.print(f"[bold red]error:[/] {e.message}", soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            e2 = Interrupted("interrupted", fix="nothing half-written was kept; run the command again")
            err.print(f"[bold red]error:[/] {e2.message}", soft_wrap=True)
            raise typer.Exit(e2.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _version_callback(value: bool) -> None:
    if value:
        out.print(f"rn50 {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress and show tracebacks.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    STATE["verbose"] = verbose
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_time=False, show_path=False)],
        force=True,
    )


def human(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


@app.command()
@handles_errors
def info(depth: DepthOpt = 50, image_size: Annotated[int, typer.Option(help="Input height and width.")] = 224, as_json: JsonOpt = False) -> None:
    """The stage table of ResNet-DEPTH, measured from the built model: sizes, parameters, MACs."""
    from rn50.errors import UsageError
    from rn50.model import resnet
    from rn50.summary import summarize

    if image_size < 32:
        raise UsageError(f"--image-size {image_size} is too small", fix="pass 32 or more (224 is standard)")
    summary = summarize(resnet(depth), image_size=image_size)
    if as_json:
        print_json({"depth": depth, "image_size": image_size, "params": summary.params, "macs": summary.macs, "stages": summary.stages})
        return
    table = Table(title=f"ResNet-{depth} at {image_size}×{image_size}")
    for col in ("stage", "output size", "blocks", "channels", "params", "MACs"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for s in summary.stages:
        table.add_row(s.name, "×".join(map(str, s.output_size)), str(s.blocks), str(s.channels), f"{s.params:,}", human(s.macs))
    table.add_section()
    table.add_row("total", "", "", "", f"{summary.params:,}", human(summary.macs))
    out.print(table)
    out.print("input: float32 'input' (batch, 3, H, W), RGB, ImageNet mean/std · output: float32 'logits' (batch, classes)")


@app.command()
@handles_errors
def export(
    depth: DepthOpt = 50,
    weights: WeightsOpt = "seeded",
    opset: Annotated[int, typer.Option(help="ONNX opset, 17 to 21.")] = 18,
    out_dir: OutOpt = Path("rn50-out"),
    simplify: Annotated[bool, typer.Option("--simplify/--no-simplify", help="Run onnxsim after export.")] = True,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Check ONNX Runtime CPU against PyTorch.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Export to a simplified ONNX file with a dynamic batch, and verify it against PyTorch."""
    from rn50.artifacts import WorkDir
    from rn50.errors import CheckFailed
    from rn50.exporter.onnx_export import check_opset
    from rn50.exporter.run import ExportConfig
    from rn50.exporter.run import export as run_export

    check_opset(opset)
    workdir = WorkDir(out_dir)
    with err.status("exporting (build, torch.export, onnxsim, verify)…"):
        result = run_export(ExportConfig(depth=depth, weights=weights, opset=opset, simplify=simplify), workdir, verify=verify)
    v = result.verification
    if as_json:
        print_json({"path": result.path, "sha256": result.sha256, "opset": result.opset, "nodes": result.nodes,
                    "verified": None if v is None else v.passed,
                    "verification": None if v is None else [{"batch": c.batch, **c.metrics.to_dict(), "failures": c.failures} for c in v.checks]})  # fmt: skip
    else:
        out.print(f"wrote {result.path} (opset {result.opset}, {result.nodes} nodes, sha256 {result.sha256[:12]})")
        if v is not None:
            table = Table(title=f"verification: ONNX Runtime CPU vs PyTorch FP32 ({v.thresholds.describe()})")
            for col in ("batch", "max abs", "cosine (worst)", "top-1", ""):
                table.add_column(col, justify="right")
            for c in v.checks:
                mark = "[green]✓[/]" if not c.failures else f"[red]✗ {'; '.join(c.failures)}[/]"
                table.add_row(str(c.batch), f"{c.metrics.max_abs:.3g}", f"{c.metrics.cosine_min:.8f}", f"{c.metrics.top1_agreement:.3f}", mark)
            out.print(table)
    if v is not None and not v.passed:
        raise CheckFailed(f"{result.path} does not match the PyTorch model: {v.failures()[0]}", fix="the manifest marks it unverified; report it with --verbose")


def main() -> None:
    app(prog_name="rn50")


if __name__ == "__main__":
    sys.exit(main())
