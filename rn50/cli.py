"""The ``rn50`` command line. Only this module prints; the library returns values."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from rn50 import __version__
from rn50.calibration.budget import DEFAULT_MAX_EXCLUDED
from rn50.commands.export import ExportOptions
from rn50.commands.loadtest import DURATION_S as LOADTEST_DURATION_S
from rn50.commands.loadtest import LOADTEST_COUNT, LoadtestOptions
from rn50.commands.options import (
    CALIBRATION_COUNT,
    PARITY_BATCH,
    PARITY_COUNT,
    CalibrationOptions,
    FeedOptions,
    ThresholdOptions,
)
from rn50.commands.pipeline import DURATION_S as PIPELINE_DURATION_S
from rn50.commands.pipeline import WARMUP_S as PIPELINE_WARMUP_S
from rn50.commands.quantize import ALL_TARGETS, CalibrateOptions, QuantizeOptions
from rn50.commands.serve import ServeOptions
from rn50.errors import Interrupted, Rn50Error, UsageError, check_interrupt
from rn50.exporter.config import ExportConfig
from rn50.jsonio import jsonable
from rn50.results.profile_results import DURATION_S, Settings
from rn50.runtimes.trt_plan import BuildOptions
from rn50.serving.server import Endpoints
from rn50.serving.triton_config import Batching

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


_HELD = contextlib.ExitStack()  # the work-directory lock of the running command, released when it ends


def open_workdir(out_dir: Path, *, existing: bool = False) -> Any:
    """The command's work directory, locked for this run (``existing``: it must already hold a manifest)."""
    from rn50.artifacts import WorkDir

    workdir = WorkDir.existing(out_dir) if existing else WorkDir(out_dir)
    _HELD.enter_context(workdir.locked())
    return workdir


def items(values: list[str] | None) -> list[str] | None:
    """Every list option takes repeated flags and comma lists alike: ``--skip a --skip b`` is ``--skip a,b``."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def print_json(obj: Any) -> None:
    out.print_json(json.dumps(jsonable(obj)))


INTERNAL_ERROR = 3  # exit code of an unforeseen failure (a bug in rn50 or in a library it calls)
INTERNAL_FIX = "re-run with rn50 --verbose for the traceback, and report it as a bug in rn50"


def handles_errors(fn: F) -> F:
    """One path for every failure: a one-line message and its exit code; a traceback only with --verbose."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            try:
                result = fn(*args, **kwargs)
                check_interrupt()  # an interrupt a library swallowed still ends the run as interrupted
                return result
            except OSError as e:  # a library's write that hit a full disk (ours go through the atomic writer)
                if e.errno != errno.ENOSPC:
                    raise
                raise UsageError(f"no space left on the device ({e.filename or 'while writing'})",
                                 fix="free some space or pass --out on another disk; nothing half-written was kept") from e  # fmt: skip
            except KeyboardInterrupt:
                raise Interrupted("interrupted", fix="nothing half-written was kept; run the command again") from None
        except Rn50Error as e:
            if STATE["verbose"]:
                err.print_exception()
            err.print(f"[bold red]error:[/] {escape(e.message)}", soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as e:  # a failure rn50 did not foresee: still one line, with its own exit code
            if STATE["verbose"]:
                err.print_exception()
            first = (str(e).strip().splitlines() or [""])[0]
            err.print(f"[bold red]error:[/] unexpected {type(e).__name__}: {escape(first)} — {INTERNAL_FIX}", soft_wrap=True)
            raise typer.Exit(INTERNAL_ERROR) from None
        finally:
            _HELD.close()

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
    depth: DepthOpt = ExportConfig.depth,
    weights: WeightsOpt = ExportConfig.weights,
    opset: Annotated[int, typer.Option(help="ONNX opset, 17 to 21.")] = ExportConfig.opset,
    out_dir: OutOpt = Path("rn50-out"),
    simplify: Annotated[bool, typer.Option("--simplify/--no-simplify", help="Run onnxsim after export.")] = ExportConfig.simplify,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Check ONNX Runtime CPU against PyTorch.")] = ExportOptions.verify,
    ir: Annotated[bool, typer.Option("--ir", help="Also write OpenVINO IR (.xml/.bin), verified against the ONNX file.")] = ExportOptions.ir,
    as_json: JsonOpt = False,
) -> None:
    """Export to a simplified ONNX file with a dynamic batch, and verify it against PyTorch."""
    from rn50.commands.export import export as run_export
    from rn50.commands.export import export_ir, unverified, unverified_ir
    from rn50.exporter.onnx_file import FP32_NAME

    options = ExportOptions(ExportConfig(depth=depth, weights=weights, opset=opset, simplify=simplify), verify=verify, ir=ir)
    options.check()  # before the work directory is created
    workdir = open_workdir(out_dir)
    with err.status("exporting (build, torch.export, onnxsim, verify)…"):
        result = run_export(options, workdir)
    irs = []
    if ir and unverified(result) is None:
        with err.status("writing OpenVINO IR…"):
            irs = export_ir(workdir, [FP32_NAME])
    v = result.verification
    if as_json:
        print_json({"path": result.path, "sha256": result.sha256, "opset": result.opset, "nodes": result.nodes,
                    "verified": None if v is None else v.passed,
                    "verification": None if v is None else [{"batch": c.batch, **c.metrics.to_dict(), "failures": c.failures} for c in v.checks],
                    "ir": [ir_dict(r) for r in irs]})  # fmt: skip
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
        print_ir(irs)
    failed = unverified(result) or unverified_ir(irs)
    if failed is not None:
        raise failed


def ir_dict(r: Any) -> dict[str, Any]:
    return {"name": r.name, "xml": r.xml, "bin": r.bin, "verified": r.verified, "max_abs": r.metrics.max_abs,
            "cosine_min": r.metrics.cosine_min}  # fmt: skip


def print_ir(irs: list[Any]) -> None:
    for r in irs:
        mark = "[green]✓[/]" if r.verified else f"[red]✗ {escape('; '.join(r.failures))}[/]"
        out.print(f"wrote {r.xml} + {r.bin.name} (OpenVINO IR; vs its ONNX on OpenVINO: max abs {r.metrics.max_abs:.3g}, "
                  f"cos worst {r.metrics.cosine_min:.8f}) {mark}", soft_wrap=True)  # fmt: skip


# Option groups, each declared once: its flags here, its defaults and checks in rn50.commands.options.
ImagesOpt = Annotated[Path | None, typer.Option("--images", help="Image folder (class sub-folders + classes.txt add accuracy).")]
ArraysOpt = Annotated[Path | None, typer.Option("--arrays", help=".npy/.npz of preprocessed float32 NCHW images.")]
RandomOpt = Annotated[int | None, typer.Option("--random", help="N seeded random tensors (flagged: says little).")]
CountOpt = Annotated[int, typer.Option("--count", help="How many sample-photo crops when no other source is given.")]
MethodOpt = Annotated[str, typer.Option("--method", help="Range method: minmax, entropy or percentile.")]
PercentileOpt = Annotated[float | None, typer.Option("--percentile", help="Percentile for --method percentile (default 99.99).")]
CalibrationBatchOpt = Annotated[int, typer.Option("--batch", help="Calibration batch size.")]
ThresholdOpt = Annotated[list[str] | None, typer.Option("--threshold", help="Parity override, e.g. int8:min_cosine=0.99.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="CPU threads for ONNX Runtime and PyTorch (default: usable cores).")]
BatchListOpt = Annotated[list[str] | None, typer.Option("--batch", help="Batch sizes, e.g. 1,8,32 or --batch 1 --batch 8 (default 1,8).")]
DurationOpt = Annotated[float, typer.Option("--duration", help="Seconds of measurement per runtime and batch.")]
WarmupOpt = Annotated[float, typer.Option("--warmup", help="Seconds of warm-up before measuring.")]
CpuOpt = Annotated[str, typer.Option("--cpu", help="INT8 class of the CPUs the onnxruntime-cpu file is for: auto (this "
                   "machine's), vnni (full-range weights; VNNI/AMX, arm64) or avx2 (7-bit weights: faithful on every x86 CPU).")]


def calibrate_options(*, images: Path | None, arrays: Path | None, random: int | None, count: int, method: str,
                      percentile: float | None, batch: int) -> CalibrateOptions:  # fmt: skip
    return CalibrateOptions(feeds=FeedOptions(images=images, arrays=arrays, random=random, count=count),
                            calibration=CalibrationOptions(method=method, percentile=percentile, batch=batch))


def read_calibration_feeds(options: CalibrateOptions) -> Any:
    """Options checked and images read, before any work directory is touched."""
    feeds = options.read_feeds()
    for w in feeds.warnings:
        err.print(f"[yellow]warning:[/] {escape(w)}")
    return feeds


def run_calibrate(options: CalibrateOptions, workdir: Any, feeds: Any) -> Any:
    """The calibrate command under a progress bar."""
    from rich.progress import Progress

    from rn50.commands.quantize import calibrate as calibrate_command

    with Progress(console=err, transient=True) as bar:
        task = bar.add_task(f"calibrating ({options.calibration.method})", total=len(feeds))
        return calibrate_command(options, workdir, feeds, progress=lambda n: bar.advance(task, n))


@app.command()
@handles_errors
def calibrate(
    out_dir: OutOpt = Path("rn50-out"),
    images: ImagesOpt = None,
    arrays: ArraysOpt = None,
    random: RandomOpt = None,
    count: CountOpt = CALIBRATION_COUNT,
    method: MethodOpt = CalibrationOptions.method,
    percentile: PercentileOpt = None,
    batch: CalibrationBatchOpt = CalibrationOptions.batch,
    as_json: JsonOpt = False,
) -> None:
    """Collect activation ranges (or reuse the cached table for the same model, images and method)."""
    options = calibrate_options(images=images, arrays=arrays, random=random, count=count, method=method, percentile=percentile, batch=batch)
    feeds = read_calibration_feeds(options)
    result = run_calibrate(options, open_workdir(out_dir), feeds)
    t = result.table
    if as_json:
        print_json({"path": result.path, "reused": result.reused, "key": t.key, "method": t.method, "options": t.options,
                    "images": t.images, "tensors": len(t.ranges)})  # fmt: skip
        return
    verb = "reused" if result.reused else "wrote"
    out.print(f"{verb} {result.path}: {len(t.ranges)} tensor ranges, {t.method} {t.options}, {t.images} images ({escape(t.set_description)})")


@app.command()
@handles_errors
def quantize(
    int8: Annotated[bool, typer.Option("--int8", help="INT8 Q/DQ artifacts from the calibration table.")] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16 artifact with float32 input/output.")] = False,
    target: Annotated[str, typer.Option("--target", help="INT8 target: tensorrt, onnxruntime-cpu or all.")] = ALL_TARGETS,
    ir: Annotated[bool, typer.Option("--ir", help="Also write OpenVINO IR (.xml/.bin) of each file, verified against it.")] = False,
    budget: Annotated[list[str] | None, typer.Option("--budget", help="INT8 accuracy budget vs FP32, KEY=VALUE[,KEY=VALUE] "
                      "(min_cosine_mean, min_cosine, min_top1, max_abs): the most sensitive layers are left out of INT8 until it holds.")] = None,
    max_excluded: Annotated[int | None, typer.Option("--max-excluded", help=f"With --budget: most layers left out "
                            f"(default {DEFAULT_MAX_EXCLUDED}); exit 1 if the budget still fails.")] = None,
    high_precision: Annotated[str, typer.Option("--high-precision", help="TensorRT Q/DQ file: precision of its non-INT8 "
                              "parts, fp32 or fp16 (FP32 input and output either way).")] = QuantizeOptions.high_precision,
    classifier: Annotated[str, typer.Option("--classifier", help="The final Gemm in float or int8 (float: measured, "
                          "more accurate for ~1% CPU latency; see the README).")] = QuantizeOptions.classifier,
    cpu: CpuOpt = QuantizeOptions.cpu,
    out_dir: OutOpt = Path("rn50-out"),
    images: ImagesOpt = None,
    arrays: ArraysOpt = None,
    random: RandomOpt = None,
    count: CountOpt = CALIBRATION_COUNT,
    method: MethodOpt = CalibrationOptions.method,
    percentile: PercentileOpt = None,
    batch: CalibrationBatchOpt = CalibrationOptions.batch,
    as_json: JsonOpt = False,
) -> None:
    """Write FP16 and/or INT8 (per target) ONNX artifacts, linted, with a per-layer quality report."""
    from rn50.commands.export import export_ir, unverified_ir
    from rn50.commands.options import parse_budget
    from rn50.commands.quantize import quantize as quantize_command

    cal = calibrate_options(images=images, arrays=arrays, random=random, count=count, method=method, percentile=percentile, batch=batch)
    options = QuantizeOptions(int8=int8, fp16=fp16, target=target, calibrate=cal, ir=ir,
                              budget=parse_budget(budget) if budget is not None else None, max_excluded=max_excluded,
                              high_precision=high_precision, classifier=classifier, cpu=cpu)  # fmt: skip
    options.check()
    feeds = read_calibration_feeds(cal) if int8 else None
    workdir = open_workdir(out_dir)
    table = None
    if int8:
        calibration = run_calibrate(cal, workdir, feeds)
        if calibration.reused:
            err.print(f"reusing calibration table {calibration.path}")
        table = calibration.table
    with err.status("quantizing…") as status:
        done = quantize_command(options, workdir, table=table, progress=status.update)
    results = done.results
    irs = []
    if ir:
        with err.status("writing OpenVINO IR…"):
            irs = export_ir(workdir, [r.name for r in results])
    if as_json:
        print_json([{"name": r.name, "path": r.path, "target": r.target, "output": r.output.to_dict(),
                     "worst_layers": r.layers[:5], "notes": r.notes, "form": r.form} for r in results] + [ir_dict(r) for r in irs])  # fmt: skip
    else:
        from rn50.calibration.quantized import QUALITY_CROPS

        table_ = Table(title=f"artifacts vs the FP32 graph ({QUALITY_CROPS} held-apart sample crops, parity's default; each file's own Q/DQ semantics)")
        for col in ("artifact", "file", "cos mean", "cos worst", "SQNR dB", "top-1", "worst layer (SQNR dB)"):
            table_.add_column(col, justify="left" if col in ("artifact", "file", "worst layer (SQNR dB)") else "right")
        for r in results:
            o = r.output
            worst = f"{r.layers[0].node} ({r.layers[0].sqnr_db:.1f})" if r.layers else "–"
            table_.add_row(r.name, r.path.name, f"{o.cosine_mean:.6f}", f"{o.cosine_min:.6f}", f"{o.sqnr_db:.1f}", f"{o.top1_agreement:.3f}", worst)
        out.print(table_)
        for r in results:
            if r.form is not None:
                out.print(f"{r.name}: {escape(r.form.describe())}")
            if r.search is not None:
                out.print(f"{r.name}: {escape(r.search.summary())}")
                if r.search.excluded:
                    out.print("  left out of INT8: " + ", ".join(r.search.excluded))
        out.print("wrote " + ", ".join(str(p) for p in done.reports))
        print_ir(irs)
    failed = unverified_ir(irs)
    if failed is not None:
        raise failed


@app.command("build-trt")
@handles_errors
def build_trt(
    fp16: Annotated[bool, typer.Option("--fp16", help="Build from the FP16 ONNX (made first if missing).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Build from the TensorRT Q/DQ ONNX (calibrated and quantized first if missing).")] = False,
    min_batch: Annotated[int, typer.Option(help="Optimisation profile: smallest batch.")] = BuildOptions.min_batch,
    opt_batch: Annotated[int, typer.Option(help="Optimisation profile: batch TensorRT tunes for.")] = BuildOptions.opt_batch,
    max_batch: Annotated[int, typer.Option(help="Optimisation profile: largest batch.")] = BuildOptions.max_batch,
    workspace: Annotated[int, typer.Option(help="Workspace limit in MiB.")] = BuildOptions.workspace_mib,
    opt_level: Annotated[int, typer.Option(help="Builder optimisation level, 0-5.")] = BuildOptions.opt_level,
    hardware_compat: Annotated[str, typer.Option(help="none, ampere-plus or same-compute-capability.")] = BuildOptions.hardware_compat,
    version_compat: Annotated[bool, typer.Option("--version-compat", help="Engine loadable by later TensorRT versions.")] = False,
    onnx_file: Annotated[Path | None, typer.Option("--onnx", help="Build from this ONNX file (e.g. a Q/DQ model another tool "
                         "wrote) instead of the work directory's; its precision must match --fp16/--int8.")] = None,
    out_dir: OutOpt = Path("rn50-out"),
    images: ImagesOpt = None,
    arrays: ArraysOpt = None,
    random: RandomOpt = None,
    count: CountOpt = CALIBRATION_COUNT,
    method: MethodOpt = CalibrationOptions.method,
    percentile: PercentileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Build a strongly typed TensorRT engine (FP32, FP16 or INT8 from the ONNX's own precision)."""
    from rn50.commands.build_trt import BuildTrtOptions, make_source, missing_source, precision_of
    from rn50.commands.build_trt import build_trt as build_command
    from rn50.runtimes.registry import STANDIN

    build = BuildOptions(precision=precision_of(fp16=fp16, int8=int8), min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
                         workspace_mib=workspace, opt_level=opt_level, hardware_compat=hardware_compat, version_compat=version_compat)  # fmt: skip
    cal = calibrate_options(images=images, arrays=arrays, random=random, count=count, method=method, percentile=percentile,
                            batch=CalibrationOptions.batch)  # fmt: skip
    options = BuildTrtOptions(build=build, calibrate=cal, onnx=onnx_file)
    options.check()
    workdir = open_workdir(out_dir)
    made = missing_source(options, workdir)
    if made is not None:
        table = run_calibrate(cal, workdir, read_calibration_feeds(cal)).table if made == "int8" else None
        with err.status(f"making the {made} ONNX file first…"):
            make_source(options, workdir, table=table)
    with err.status("building the TensorRT engine…") as status:
        result = build_command(options, workdir, progress=lambda m: status.update(f"build-trt: {escape(m)}"))
    if as_json:
        print_json(result)
        return
    out.print(f"{'reused' if result.reused else 'wrote'} {result.engine} (+ {result.sidecar.name})", soft_wrap=True)
    if result.runtime == STANDIN:
        err.print(f"[yellow]note:[/] built by {STANDIN}: rn50's TensorRT stand-in, not TensorRT")
    if result.layers:
        r = result.layers
        out.print(f"layers: {r.layers}; by input precision {r.precisions}; INT8 convolutions {r.int8_convolutions}; reformats {len(r.reformats)}")


@app.command()
@handles_errors
def parity(
    out_dir: OutOpt = Path("rn50-out"),
    images: ImagesOpt = None,
    arrays: ArraysOpt = None,
    random: RandomOpt = None,
    count: CountOpt = PARITY_COUNT,
    batch: Annotated[int, typer.Option(help="Batch size for every runtime.")] = PARITY_BATCH,
    runtime: Annotated[list[str] | None, typer.Option("--runtime", help="Runtime(s) to run (default: every available one).")] = None,
    artifact: Annotated[list[str] | None, typer.Option("--artifact", help="Manifest artifact(s) to compare (default: all).")] = None,
    onnx_file: Annotated[list[Path] | None, typer.Option("--onnx", help="Extra ONNX file(s) to compare.")] = None,
    threshold: ThresholdOpt = None,
    reference_device: Annotated[str, typer.Option(help="Device for the PyTorch reference: cpu or cuda.")] = "cpu",
    threads: Annotated[int | None, typer.Option(help="CPU threads for ONNX Runtime CPU.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every runtime × precision artifact against PyTorch FP32 on the same feeds, with a verdict."""
    from rn50.commands.parity import ParityOptions, failure
    from rn50.commands.parity import parity as parity_command
    from rn50.reports import parity_report

    options = ParityOptions(feeds=FeedOptions(images=images, arrays=arrays, random=random, count=count), batch=batch,
                            runtimes=items(runtime), artifacts=items(artifact), onnx=onnx_file,
                            thresholds=ThresholdOptions.parse(items(threshold)), reference_device=reference_device, threads=threads)  # fmt: skip
    options.check()  # every option, before the model is built
    workdir = open_workdir(out_dir, existing=True)
    with err.status("parity…") as status:
        done = parity_command(options, workdir, progress=lambda m: status.update(f"parity: {escape(m)}"))
    if as_json:
        print_json(parity_report.to_dict(done.report))
    else:
        print_parity(done.report)
        out.print("wrote " + ", ".join(str(p) for p in done.written))
    if not done.report.passed:
        raise failure(done.report)


def print_parity(report: Any) -> None:
    for w in report.feeds.warnings:
        err.print(f"[yellow]warning:[/] {escape(w)}")
    table = Table(title=f"parity vs {report.reference.label} ({report.reference.device}), {report.feeds.description}")
    for col in ("runtime · artifact", "max abs", "cos worst", "SQNR dB", "top-1", "top-5", "verdict"):
        table.add_column(col, justify="left" if col in ("runtime · artifact", "verdict") else "right")
    for r in report.ran:
        m = r.metrics
        verdict = "[green]✓[/]" if r.status == "pass" else f"[red]✗ {escape('; '.join(r.failures))}[/]"
        sqnr = f"{m.sqnr_db:.1f}" if m.sqnr_db != float("inf") else "inf"
        table.add_row(r.label, f"{m.max_abs:.3g}", f"{m.cosine_min:.6f}", sqnr, f"{m.top1_agreement:.3f}", f"{m.top5_overlap:.3f}", verdict)
    out.print(table)
    for r in report.ran:
        out.print(f"  {r.label}: ran on {r.device}; thresholds {r.thresholds}; max rel {r.metrics.max_rel:.3g}")
        if r.engine is not None and r.quantization is not None:
            q, e = r.quantization, r.engine
            out.print(f"    file vs FP32 (its Q/DQ semantics): cos mean {q.cosine_mean:.6f}, worst {q.cosine_min:.6f}; "
                      f"engine vs file: cos mean {e.cosine_mean:.6f}, worst {e.cosine_min:.6f} ({r.engine_thresholds})", soft_wrap=True)  # fmt: skip
            if r.cause:
                out.print(f"    [red]engine deviates from its file[/]: {escape(r.cause)} — fix: {escape(str(r.fix))}", soft_wrap=True)
        if r.accuracy_top1 is not None:
            out.print(f"    accuracy: top-1 {r.accuracy_top1:.4f}, top-5 {r.accuracy_top5:.4f}")
    if report.feeds.labelled:
        out.print(f"  reference accuracy: top-1 {report.reference.accuracy_top1:.4f}, top-5 {report.reference.accuracy_top5:.4f}")
    for r in report.results:
        if r.metrics is None:
            colour = "yellow" if r.status == "skipped" else "red"
            out.print(f"  [{colour}]{r.status}[/] {escape(r.label)}: {escape(str(r.reason))}")


def profile_settings(*, batch: list[str] | None, warmup: float, warmup_iterations: int, duration: float,
                     iterations: int | None, threads: int | None, cuda_graphs: bool) -> Settings:  # fmt: skip
    from rn50.machine import usable_cores
    from rn50.results.profile_results import parse_batches

    return Settings(batches=parse_batches(items(batch)), warmup_s=warmup, warmup_iterations=warmup_iterations, duration_s=duration,
                    iterations=iterations, threads=usable_cores() if threads is None else threads, cuda_graphs=cuda_graphs)  # fmt: skip


@app.command()
@handles_errors
def profile(
    out_dir: OutOpt = Path("rn50-out"),
    runtime: Annotated[list[str] | None, typer.Option("--runtime", help="torch-cpu, torch-cuda, onnxruntime-cpu/-cuda/-trt, tensorrt (default: all).")] = None,
    precision: Annotated[list[str] | None, typer.Option("--precision", help="fp32, fp16, int8 (default: all).")] = None,
    artifact: Annotated[list[str] | None, typer.Option("--artifact", help="Manifest artifact(s) (default: all; pytorch-fp32 is the model).")] = None,
    batch: BatchListOpt = None,
    warmup: WarmupOpt = Settings.warmup_s,
    warmup_iterations: Annotated[int, typer.Option(help="Warm-up iterations at least (besides --warmup seconds).")] = Settings.warmup_iterations,
    duration: DurationOpt = DURATION_S,
    iterations: Annotated[int | None, typer.Option(help="Measure exactly N iterations instead of --duration seconds.")] = None,
    threads: ThreadsOpt = None,
    cuda_graphs: Annotated[bool, typer.Option("--cuda-graphs/--no-cuda-graphs", help="Also time GPU runtimes with CUDA graphs.")] = Settings.cuda_graphs,
    as_json: JsonOpt = False,
) -> None:
    """Latency and throughput of every runtime × precision × batch, same inputs and clock, with reports."""
    from rn50.commands.profile import ProfileOptions
    from rn50.commands.profile import profile as profile_command
    from rn50.reports import profile_report

    settings = profile_settings(batch=batch, warmup=warmup, warmup_iterations=warmup_iterations, duration=duration,
                                iterations=iterations, threads=threads, cuda_graphs=cuda_graphs)  # fmt: skip
    options = ProfileOptions(settings=settings, runtimes=items(runtime), precisions=items(precision), artifacts=items(artifact))
    options.check()
    workdir = open_workdir(out_dir, existing=True)
    with err.status("profiling…") as status:
        done = profile_command(options, workdir, progress=lambda m: status.update(f"profile: {escape(m)}"))
    if as_json:
        print_json(profile_report.to_dict(done.report))
        return
    print_profile(done.report, profile_report.parity_verdicts(workdir.root / "parity.json"))
    out.print("wrote " + ", ".join(str(p) for p in done.written))


def print_profile(report: Any, verdicts: dict[Any, Any]) -> None:
    from rn50.reports.profile_report import fastest, parity_mark
    from rn50.runtimes.timing import HIGH_CV

    s = report.settings
    table = Table(title=f"profile: warm-up {s.warmup_s} s, {s.phase} each, {s.threads} CPU threads")
    for col in ("runtime", "artifact", "batch", "metric", "median ms", "p99", "CV", "img/s", "parity"):
        table.add_column(col, justify="left" if col in ("runtime", "artifact", "metric", "parity") else "right", overflow="fold")
    for r in report.measured:
        st = r.stats
        cv = f"[yellow]{st.cv:.1%}[/]" if st.unstable else f"{st.cv:.1%}"
        mark = parity_mark(r, verdicts)
        par = {"pass": "[green]pass[/]", "fail": "[red]fail[/]"}.get(mark, mark)
        table.add_row(r.runtime, r.artifact, str(r.batch), r.metric, f"{st.median_ms:.2f}", f"{st.p99_ms:.2f}",
                      cv, f"{st.throughput:.1f}", par)  # fmt: skip
    out.print(table)
    for r in report.unstable:
        err.print(f"[yellow]warning:[/] {escape(r.label)} batch {r.batch}: CV {r.stats.cv:.1%} > {HIGH_CV:.0%}; "
                  "the machine may be busy — re-run on a quiet machine or with a longer --duration")  # fmt: skip
    not_run: dict[tuple[str, str, str], list[str]] = {}
    for r in report.rows:
        if r.stats is None:
            where = f" batch {r.batch} {r.metric}" if r.batch else ""
            not_run.setdefault((r.status, r.runtime, str(r.reason)), []).append(r.artifact + where)
    for (status, runtime, reason), what in not_run.items():
        out.print(f"  [yellow]{status}[/] {runtime} ({escape(', '.join(what))}): {escape(reason)}")
    for b in sorted({r.batch for r in report.measured}):
        best = fastest(report, verdicts, b) if verdicts else None
        if best is not None and best.stats is not None:
            out.print(f"  fastest at acceptable error, batch {b}: {escape(best.label)} ({best.stats.median_ms:.3f} ms)")
    m = report.machine
    out.print(f"  machine: {escape(str(m['cpu']['model']))}, {m['cpu']['usable_cores']} usable cores, threads {m['threads']}, "
              f"GPU {escape(', '.join(g['name'] for g in m['gpus']) or '—')}")  # fmt: skip


@app.command()
@handles_errors
def pipeline(
    weights: WeightsOpt = ExportConfig.weights,
    depth: DepthOpt = ExportConfig.depth,
    images: ImagesOpt = None,
    out_dir: OutOpt = Path("rn50-out"),
    skip: Annotated[list[str] | None, typer.Option("--skip", help="Step(s) to leave out: export, calibrate, quantize, build-trt, parity, profile.")] = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only these step(s).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Re-run the selected steps even if their inputs did not change.")] = False,
    method: MethodOpt = CalibrationOptions.method,
    percentile: PercentileOpt = None,
    calibration_count: Annotated[int, typer.Option(help="Sample crops to calibrate on when no --images.")] = CALIBRATION_COUNT,
    parity_count: Annotated[int, typer.Option(help="Held-apart sample crops for parity when no --images.")] = PARITY_COUNT,
    threshold: ThresholdOpt = None,
    batch: BatchListOpt = None,
    warmup: WarmupOpt = PIPELINE_WARMUP_S,
    duration: DurationOpt = PIPELINE_DURATION_S,
    threads: ThreadsOpt = None,
    cpu: CpuOpt = QuantizeOptions.cpu,
    as_json: JsonOpt = False,
) -> None:
    """The whole job: export → calibrate → quantize → build-trt → parity → profile, then report.md/html."""
    from rn50.commands.pipeline import Pipeline, PipelineOptions, select_steps
    from rn50.reports import workdir_report

    settings = profile_settings(batch=batch, warmup=warmup, warmup_iterations=Settings.warmup_iterations, duration=duration,
                                iterations=None, threads=threads, cuda_graphs=Settings.cuda_graphs)  # fmt: skip
    options = PipelineOptions(export=ExportConfig(depth=depth, weights=weights), images=images, calibration_count=calibration_count,
                              calibration=CalibrationOptions(method=method, percentile=percentile), parity_count=parity_count,
                              thresholds=ThresholdOptions.parse(items(threshold)), profile=settings,
                              steps=select_steps(items(skip), items(only)), force=force, cpu=cpu)  # fmt: skip
    options.check()
    workdir = open_workdir(out_dir)
    with err.status("pipeline…") as status:
        # Where stderr is not a terminal (CI logs) the spinner shows nothing: print a line per step instead.
        lines = None if err.is_terminal else (lambda m: err.print(f"pipeline: {escape(m)}"))
        result = Pipeline(workdir, options, progress=lambda m: status.update(f"pipeline: {escape(m)}"), steps=lines).run()
    # A run refused before any step did anything (another model's directory, ...) leaves the directory alone.
    written = workdir_report.write(workdir, list(result.steps)) if result.started else []
    if as_json:
        print_json({"steps": result.steps, "failed": result.failed, "reports": written})
    else:
        table = Table(title=f"rn50 pipeline → {out_dir}")
        for col in ("step", "status", "s", "detail"):
            table.add_column(col, justify="right" if col == "s" else "left", overflow="fold")
        colours = {"ran": "green", "reused": "cyan", "skipped": "yellow", "failed": "red", "not run": "dim"}
        for s in result.steps:
            table.add_row(s.name, f"[{colours[s.status]}]{s.status}[/]", f"{s.seconds:.1f}", escape(s.detail))
        out.print(table)
        if written:
            out.print("wrote " + ", ".join(str(p) for p in written))
    if result.error is not None:
        raise result.error


MaxBatchOpt = Annotated[int, typer.Option("--max-batch", help="Triton's max_batch_size for ONNX and IR models (an engine's comes from its profile).")]
QueueDelayOpt = Annotated[int, typer.Option("--queue-delay-us", help="Dynamic batcher: how long a request may wait for others (µs).")]
ModelNameOpt = Annotated[str, typer.Option("--model-name", help="The model's name on the server.")]
InstancesOpt = Annotated[int, typer.Option("--instances", help="Model instances (Triton's instance_group count).")]


@app.command("triton-repo")
@handles_errors
def triton_repo(
    out_dir: OutOpt = Path("rn50-out"),
    repo: Annotated[Path | None, typer.Option("--repo", help="Repository folder (default: triton/ in the work directory).")] = None,
    artifact: Annotated[list[str] | None, typer.Option("--artifact", help="Manifest artifact(s) to include (default: every model).")] = None,
    device: Annotated[list[str] | None, typer.Option("--device", help="cpu, gpu (default both): which instance groups to write.")] = None,
    max_batch: MaxBatchOpt = Batching.max_batch,
    queue_delay_us: QueueDelayOpt = Batching.queue_delay_us,
    instances: InstancesOpt = Batching.instances,
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads per CPU instance (default: the backend's).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """A Triton model repository for the work directory's artifacts, on Triton's stock backends."""
    from rn50.commands.triton_repo import TritonRepoOptions
    from rn50.commands.triton_repo import triton_repo as triton_repo_command

    options = TritonRepoOptions(repo=repo, artifacts=items(artifact), devices=items(device),
                                batching=Batching(max_batch, queue_delay_us, instances), threads=threads)  # fmt: skip
    options.check()
    workdir = open_workdir(out_dir, existing=True)
    done = triton_repo_command(options, workdir)
    if as_json:
        print_json(done)
        return
    table = Table(title=f"Triton model repository {done.repository}")
    for col in ("model", "artifact", "backend", "device", "precision", "max batch", "preferred"):
        table.add_column(col)
    for m in done.models:
        table.add_row(m.name, m.artifact, m.backend, m.device, m.precision, str(m.max_batch_size), ",".join(map(str, m.preferred_batch_sizes)))
    out.print(table)
    for sk in done.skipped:
        out.print(f"  [yellow]skipped[/] {escape(sk.artifact)}: {escape(sk.reason)}")
    out.print(f"wrote {len(done.models)} model(s); every config.pbtxt parsed with Triton's ModelConfig and checked against its artifact")


@app.command()
@handles_errors
def serve(
    out_dir: OutOpt = Path("rn50-out"),
    artifact: Annotated[str, typer.Option("--artifact", help="Manifest artifact to serve.")] = ServeOptions.artifact,
    runtime: Annotated[str | None, typer.Option("--runtime", help="Runtime that runs it (default: onnxruntime-cpu, openvino-cpu or tensorrt by kind).")] = None,
    model_name: ModelNameOpt = ServeOptions.model,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")] = Endpoints.host,
    port: Annotated[int, typer.Option("--port", help="HTTP port.")] = Endpoints.http_port,
    grpc_port: Annotated[int, typer.Option("--grpc-port", help="gRPC port.")] = Endpoints.grpc_port,
    metrics_port: Annotated[int, typer.Option("--metrics-port", help="Prometheus metrics port.")] = Endpoints.metrics_port,
    max_batch: MaxBatchOpt = Batching.max_batch,
    queue_delay_us: QueueDelayOpt = Batching.queue_delay_us,
    instances: InstancesOpt = Batching.instances,
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads per instance (default: the runtime's).")] = None,
) -> None:
    """Serve one artifact on a real Triton Inference Server (PyTriton's), through rn50's runner; Ctrl-C or SIGTERM stops it."""
    from rn50.artifacts import WorkDir
    from rn50.commands.serve import serve as serve_command

    options = ServeOptions(artifact=artifact, runtime=runtime, model=model_name, endpoints=Endpoints(host, port, grpc_port, metrics_port),
                           batching=Batching(max_batch, queue_delay_us, instances), threads=threads)  # fmt: skip
    options.check()
    workdir = WorkDir.existing(out_dir)  # read only, and not locked: rn50 loadtest writes its report there while this serves

    def ready(s: Any) -> None:
        e = s.endpoints
        out.print(f"serving {escape(s.label)} ({s.precision}) as model '{s.model}', max batch {s.max_batch_size}: "
                  f"HTTP {e.host}:{e.http_port}, gRPC {e.host}:{e.grpc_port}, metrics http://{e.host}:{e.metrics_port}/metrics", soft_wrap=True)  # fmt: skip
        out.print(f"ready (the model answered through the server); Triton's log: {s.log_file}; Ctrl-C or SIGTERM stops it", soft_wrap=True)

    with err.status("starting Triton Inference Server…") as status:

        def on_ready(s: Any) -> None:
            status.stop()
            ready(s)

        try:
            serve_command(options, workdir, on_ready=on_ready)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the way a server is stopped, said as such
            err.print("stopped: Triton answered the requests in flight, then exited")
            raise typer.Exit(Interrupted.exit_code) from None


@app.command()
@handles_errors
def loadtest(
    out_dir: OutOpt = Path("rn50-out"),
    url: Annotated[str, typer.Option("--url", help="The server's HOST:PORT (HTTP, or gRPC with --protocol grpc).")] = LoadtestOptions.url,
    model_name: ModelNameOpt = LoadtestOptions.model,
    protocol: Annotated[str, typer.Option("--protocol", help="http or grpc.")] = LoadtestOptions.protocol,
    concurrency: Annotated[list[str] | None, typer.Option("--concurrency", help="Concurrent clients per level, e.g. 1,4,8 (default).")] = None,
    duration: Annotated[float, typer.Option("--duration", help="Seconds per level.")] = LOADTEST_DURATION_S,
    requests: Annotated[int | None, typer.Option("--requests", help="Requests per level, instead of --duration.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds a request may take before it counts as failed.")] = LoadtestOptions.timeout_s,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for a server that is still starting (0: it must answer now).")] = LoadtestOptions.wait_s,
    precision: Annotated[str | None, typer.Option("--precision", help="Judge answers as fp32/fp16/int8/bf16 (default: what the model's config says).")] = None,
    images: ImagesOpt = None,
    arrays: ArraysOpt = None,
    count: Annotated[int, typer.Option("--count", help="Held-apart sample crops the clients cycle through.")] = LOADTEST_COUNT,
    threshold: ThresholdOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Concurrent clients against a served model: throughput, latency percentiles, the batches Triton formed, every answer checked."""
    from rn50.commands.loadtest import failure, parse_levels
    from rn50.commands.loadtest import loadtest as loadtest_command
    from rn50.reports import loadtest_report

    options = LoadtestOptions(url=url, model=model_name, protocol=protocol, concurrency=parse_levels(items(concurrency)), duration_s=duration,
                              requests=requests, timeout_s=timeout, wait_s=wait, precision=precision,
                              feeds=FeedOptions(images=images, arrays=arrays, count=count), thresholds=ThresholdOptions.parse(items(threshold)))  # fmt: skip
    options.check()
    workdir = open_workdir(out_dir, existing=True)
    with err.status("load test…") as status:
        done = loadtest_command(options, workdir, progress=lambda m: status.update(f"loadtest: {escape(m)}"))
    report = done.report
    if as_json:
        print_json(loadtest_report.to_dict(report))
    else:
        table = Table(title=f"load test: {report.model.name} at {report.url} ({report.protocol}), {report.phase} per level, judged as {report.precision}")
        for col in ("clients", "answered", "img/s", "median ms", "p99 ms", "batches formed", "wrong", "failed"):
            table.add_column(col, justify="right")
        for lv in report.levels:
            med, p99 = (f"{lv.latency.median_ms:.2f}", f"{lv.latency.p99_ms:.2f}") if lv.latency else ("—", "—")
            table.add_row(str(lv.concurrency), str(lv.requests), f"{lv.throughput:.1f}", med, p99, loadtest_report.formed(lv.batches), str(lv.wrong), str(lv.errors))
        out.print(table)
        out.print(report.verdict_line())
        out.print("wrote " + ", ".join(str(p) for p in done.written))
    if not report.passed:
        raise failure(report)


@app.command()
@handles_errors
def verify(out_dir: OutOpt = Path("rn50-out"), as_json: JsonOpt = False) -> None:
    """Check every artifact in the manifest: file, sha256, parent chain, engine sidecars. Exit 1 on a mismatch."""
    from rn50.commands.verify import verify as run_verify
    from rn50.errors import CheckFailed

    findings = run_verify(open_workdir(out_dir, existing=True))
    if as_json:
        print_json(findings)
    else:
        colours = {"ok": "green", "unrecorded": "yellow"}
        for f in findings:
            fix = f" — fix: {escape(f.fix)}" if f.fix else ""
            out.print(f"[{colours.get(f.status, 'red')}]{f.status:>12}[/]  {escape(f.artifact)} {escape(f.path)}: {escape(f.detail)}{fix}", soft_wrap=True)
    failed = [f for f in findings if f.failed]
    if failed:
        raise CheckFailed(f"{len(failed)} of {len(findings)} artifacts failed verification, first {failed[0].artifact}: {failed[0].detail}",
                          fix=failed[0].fix)  # fmt: skip


@app.command()
@handles_errors
def doctor(as_json: JsonOpt = False) -> None:
    """What this machine can run: Python, torch, ONNX, ONNX Runtime providers, TensorRT, GPU, CPU INT8 features."""
    from rn50.commands.doctor import BROKEN, run_checks

    checks = run_checks()
    if as_json:
        print_json(checks)
    else:
        colours = {"ok": "green", "missing": "yellow", "broken": "red"}
        for c in checks:
            fix = f" — fix: {escape(c.fix)}" if c.fix and c.status != "ok" else ""
            out.print(f"[{colours[c.status]}]{c.status:>7}[/]  {c.name}: {escape(c.detail)}{fix}", soft_wrap=True)
    broken = [c for c in checks if c.status == BROKEN]
    if broken:
        from rn50.errors import CheckFailed

        raise CheckFailed(f"{len(broken)} broken: {', '.join(c.name for c in broken)}", fix=broken[0].fix)


def _interrupt(signum: int, frame: Any) -> None:
    """Ctrl-C and SIGTERM alike: partial files removed, lock released, exit 130. The flag outlives the
    KeyboardInterrupt, so that a library that swallows it cannot turn an interrupted run into a finished one."""
    from rn50.errors import INTERRUPT

    INTERRUPT.set()
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    app(prog_name="rn50")


if __name__ == "__main__":
    main()
