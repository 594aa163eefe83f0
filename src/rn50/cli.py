"""The ``rn50`` command line. Only this module prints; the library returns values.

Every command is a row of ``COMMANDS``: the library function that runs it (``rn50.commands``), its options object
and which work directory it needs. A command's flags are read from its options object, whose fields declare their
own flag, help and default (``rn50.commands.flags``): an option group is declared once, and every command holding
it takes the same flags. What a command shows is rendered from the ``Section``s its outcome gives (the ones its
report files are rendered from), and ``--json`` prints the outcome's own dictionary."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import inspect
import json
import logging
import os
import signal
import sys
import time
import typing
from collections.abc import Callable, Iterator  # noqa: I001,TC003 - Typer reads the annotations below at run time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.measure import Measurement

from rn50 import __version__
from rn50.artifacts import DEFAULT_WORKDIR, no_space
from rn50.commands.build_trt import BuildTrtOptions, build_trt
from rn50.commands.calibrate import CalibrateOptions, calibrate
from rn50.commands.doctor import doctor
from rn50.commands.export import ExportOptions, export
from rn50.commands.flags import Flag, flag_of
from rn50.commands.info import InfoOptions, info
from rn50.commands.loadtest import LoadtestOptions, loadtest
from rn50.commands.outcome import Ui
from rn50.commands.parity import ParityOptions, parity
from rn50.commands.pipeline import PipelineOptions, pipeline
from rn50.commands.profile import ProfileOptions, profile
from rn50.commands.quantize import QuantizeOptions, quantize
from rn50.commands.serve import ServeOptions, serve
from rn50.commands.triton_repo import TritonRepoOptions, triton_repo
from rn50.commands.tune import TuneOptions, tune
from rn50.commands.verify import verify
from rn50.errors import Interrupted, Rn50Error, UsageError, check_interrupt
from rn50.jsonio import jsonable
from rn50.reports.render import to_rich
from rn50.words import use as use_vocabulary

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
STATE = {"verbose": False, "shown": False}  # shown: this command printed its result on stdout
F = TypeVar("F", bound=Callable[..., Any])
INTERNAL_ERROR = 3  # exit code of an unforeseen failure (a bug in rn50 or in a library it calls)
INTERNAL_FIX = "re-run with rn50 --verbose for the traceback, and report it as a bug in rn50"
LOG_EVERY_S = 5.0  # off a terminal, a status line at most this often


@dataclass(frozen=True)
class Command:
    name: str
    run: Callable[..., Any]  # run(options, workdir, ui) -> an Outcome (rn50.commands.outcome)
    options: Callable[[], Any] | None = None  # the default options object
    workdir: Literal["new", "existing", "read"] | None = "existing"  # "read": no lock (it only reads, or serves)


COMMANDS = (
    Command("info", info, InfoOptions, None),
    Command("export", export, ExportOptions, "new"),
    Command("calibrate", calibrate, CalibrateOptions),
    Command("quantize", quantize, QuantizeOptions),
    Command("build-trt", build_trt, BuildTrtOptions, "new"),
    Command("parity", parity, ParityOptions),
    Command("profile", profile, ProfileOptions),
    Command("pipeline", pipeline, PipelineOptions, "new"),
    Command("triton-repo", triton_repo, TritonRepoOptions),
    Command("serve", serve, ServeOptions, "read"),
    Command("loadtest", loadtest, LoadtestOptions),
    Command("tune", tune, TuneOptions),
    Command("verify", verify, None, "read"),
    Command("doctor", doctor, None, None),
)

# --- flags from options objects ---------------------------------------------------------------------------
OUT = inspect.Parameter(
    "out_dir",
    inspect.Parameter.KEYWORD_ONLY,
    default=DEFAULT_WORKDIR,
    annotation=Annotated[
        Path, typer.Option("--out", "-o", help="Work directory: artifacts, reports and manifest.json.")
    ],
)
JSON = inspect.Parameter(
    "as_json",
    inspect.Parameter.KEYWORD_ONLY,
    default=False,
    annotation=Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of tables.")],
)


def items(values: list[str]) -> list[str]:
    """Every list option takes repeated flags and comma lists alike: ``--skip a --skip b`` is ``--skip a,b``."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def flagged(obj: Any) -> Iterator[tuple[dataclasses.Field[Any], Flag, Any, Any]]:
    """(field, flag, its type, its default here) for every flagged field of ``obj`` and of its option groups."""
    names = vars(sys.modules[type(obj).__module__]) | {"Path": Path}  # a type imported for type checking only is a Path
    for f in dataclasses.fields(obj):
        value, declared = getattr(obj, f.name), flag_of(f, type(obj))
        if declared is not None:
            yield f, declared, declared.cli_type or (eval(f.type, names) if isinstance(f.type, str) else f.type), value  # noqa: S307
        elif dataclasses.is_dataclass(value):
            yield from flagged(value)


def parameters(obj: Any) -> list[inspect.Parameter]:
    params = []
    for _field, fl, kind, default in flagged(obj):
        for decl in fl.choices or [None]:
            name = decl.lstrip("-").replace("-", "_") if decl else fl.name
            typ, value = (bool, False) if decl else (fl.cli_type or kind, None if fl.parse else default)
            option = typer.Option(
                *((decl,) if decl else fl.decls), help=fl.text(), show_default=value not in (None, False, [])
            )
            params.append(
                inspect.Parameter(
                    name, inspect.Parameter.KEYWORD_ONLY, default=value, annotation=Annotated[typ, option]
                )
            )
    names = [p.name for p in params]
    if len(names) != len(set(names)):
        raise TypeError(
            f"{type(obj).__name__}: two flags under one name: {sorted(n for n in names if names.count(n) > 1)}"
        )
    return params


def rebuild(obj: Any, given: dict[str, Any]) -> Any:
    """``obj`` with what the command line gave: parsed, split at commas, nested groups rebuilt."""
    changes = {}
    for f in dataclasses.fields(obj):
        fl, value = flag_of(f, type(obj)), getattr(obj, f.name)
        if fl is not None and fl.choices:
            chosen = [(decl, v) for decl, v in fl.choices.items() if given[decl.lstrip("-").replace("-", "_")]]
            if len(chosen) > 1:
                raise UsageError(f"{' and '.join(d for d, _ in chosen)} together", fix="pass one of them")
            if chosen:
                changes[f.name] = chosen[0][1]
        elif fl is not None:
            raw = given[fl.name]
            raw = items(raw) if isinstance(raw, list) and all(isinstance(v, str) for v in raw) else raw
            if fl.parse is None:
                changes[f.name] = raw
            elif raw is not None and raw != []:
                changes[f.name] = fl.parse(raw)
        elif dataclasses.is_dataclass(value):
            changes[f.name] = rebuild(value, given)
    return dataclasses.replace(obj, **changes)


# --- running a command ------------------------------------------------------------------------------------
# What the library's messages name by identity (rn50.words), spelled as these commands declare them.
VOCABULARY: dict[str, dict[str, tuple[str, ...]]] = {"": {"verbose": ("--verbose",), "version": ("--version",)}}
_HELD = contextlib.ExitStack()  # the work-directory lock of the running command, released when it ends


def open_workdir(root: Path, mode: str) -> Any:
    """The command's work directory: "new" may be created, "existing" must hold a manifest; both locked for this run.
    "read" must hold a manifest and is not locked (rn50 verify, rn50 serve only read it)."""
    from rn50.artifacts import WorkDir

    workdir = WorkDir(root) if mode == "new" else WorkDir.existing(root, write=mode != "read")
    if mode != "read":
        _HELD.enter_context(workdir.locked())
    return workdir


@contextlib.contextmanager
def live_ui(as_json: bool) -> Iterator[Ui]:
    """A spinner and progress bars on a terminal; off one (CI logs), a status line at most every LOG_EVERY_S."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn

    if not err.is_terminal:
        last = [0.0]

        def status(text: str) -> None:
            if time.monotonic() - last[0] >= LOG_EVERY_S:
                last[0] = time.monotonic()
                err.print(escape(text), soft_wrap=True)

        def bar(label: str, total: int) -> Callable[[int], None]:
            done = [0]

            def advance(n: int) -> None:
                done[0] += n
                status(f"{label}: {done[0]}/{total}")

            return advance

        def note(text: str) -> None:
            err.print(escape(text), soft_wrap=True)

        yield Ui(status=status, note=note, show=lambda outcome: show(outcome, as_json), bar=bar)
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as progress:
        spinner = progress.add_task("", total=None)

        def shown(outcome: Any) -> None:
            progress.stop()
            show(outcome, as_json)

        def new_bar(label: str, total: int) -> Callable[[int], None]:
            task = progress.add_task(escape(label), total=total)
            return lambda n: progress.advance(task, n)

        yield Ui(
            status=lambda text: progress.update(spinner, description=escape(text)),
            note=lambda text: progress.console.print(escape(text)),
            show=shown,
            bar=new_bar,
        )


def show(outcome: Any, as_json: bool) -> None:
    """An outcome as its own dictionary (--json), or as its sections."""
    STATE["shown"] = True
    if as_json:
        out.print_json(json.dumps(jsonable(outcome.to_dict())))
        return
    for renderable in to_rich(outcome.sections()):
        if out.is_terminal:
            out.print(renderable, soft_wrap=True)
            continue
        width = out.width  # print(width=) cannot exceed the console's own: widen the console for this one
        try:
            out.width = natural_width(renderable)
            out.print(renderable, soft_wrap=True)
        finally:
            out.width = width


def natural_width(renderable: Any) -> int:
    """Off a terminal (a log, a pipe, CI) rich would wrap every table at 80 columns and split its cells over lines;
    there a table is as wide as its content, one row per line."""
    unbounded = out.options.update(max_width=100_000, width=100_000)
    return max(out.width, Measurement.get(out, unbounded, renderable).maximum)


def run_command(command: Command, options: Any, out_dir: Path | None, as_json: bool) -> None:
    if options is not None:
        options.check()  # every option, before any work directory is created or model built
    workdir = open_workdir(out_dir or DEFAULT_WORKDIR, command.workdir) if command.workdir else None
    with live_ui(as_json) as ui:
        outcome = command.run(options, workdir, ui)
    if outcome is None:  # a server: it showed what it had to as it went
        return
    show(outcome, as_json)
    if outcome.error is not None:
        raise outcome.error


def json_error(given: dict[str, Any], problem: str, fix: str | None, code: int) -> None:
    """--json: a failure before any result was printed is a JSON object on stdout too, so scripts can read it."""
    if given.get("as_json") and not STATE["shown"]:
        out.print_json(json.dumps({"error": problem, "fix": fix, "exit_code": code}))


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
                full = no_space(e.filename)
                raise UsageError(full.message, fix=f"{full.fix}; nothing half-written was kept") from e
            except KeyboardInterrupt:
                raise Interrupted("interrupted", fix="nothing half-written was kept; run the command again") from None
        except Rn50Error as e:
            if STATE["verbose"]:
                err.print_exception()
            err.print(f"[bold red]{e.label}:[/] {escape(e.message)}", soft_wrap=True)
            json_error(kwargs, e.problem, e.fix, e.exit_code)
            raise typer.Exit(e.exit_code) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as e:  # a failure rn50 did not foresee: still one line, with its own exit code
            if STATE["verbose"]:
                err.print_exception()
            first = (str(e).strip().splitlines() or [""])[0]
            json_error(kwargs, f"unexpected {type(e).__name__}: {first}", INTERNAL_FIX, INTERNAL_ERROR)
            err.print(
                f"[bold red]error:[/] unexpected {type(e).__name__}: {escape(first)} — {INTERNAL_FIX}", soft_wrap=True
            )
            raise typer.Exit(INTERNAL_ERROR) from None
        finally:
            _HELD.close()

    return wrapper  # type: ignore[return-value]


def spellings(params: list[inspect.Parameter]) -> dict[str, tuple[str, ...]]:
    """Each option's keyword (the Python API's: ``out``, ``max_batch``) → how it is typed: (on,) or (on, off)."""
    keyword = {OUT.name: "out", JSON.name: "json"}
    spelled = {}
    for p in params:
        info = typing.get_args(p.annotation)[1]  # typer.Option("--a/--no-a", "-a"): the first name is its default
        decls = [info.default, *info.param_decls] if isinstance(info.default, str) else list(info.param_decls)
        first = next((d for d in decls if d.startswith("--")), "--" + p.name.replace("_", "-"))  # else Typer's own
        spelled[keyword.get(p.name, p.name)] = tuple(first.split("/"))
    return spelled


def callback(command: Command) -> Callable[..., None]:
    """The Typer command of ``command``: its flags from its options object, --out where it has a work directory."""
    default = command.options() if command.options else None
    params = (parameters(default) if default is not None else []) + ([OUT] if command.workdir else []) + [JSON]
    VOCABULARY[command.name] = spellings(params)

    def run(**given: Any) -> None:
        options = rebuild(default, given) if default is not None else None
        run_command(command, options, given.get("out_dir"), given["as_json"])

    run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in params}
    run.__doc__ = " ".join((inspect.getdoc(command.run) or "").split())  # one paragraph, wrapped by the terminal
    run.__name__ = command.name.replace("-", "_")
    return handles_errors(run)


class _LevelFormatter(logging.Formatter):
    """``warning: …`` as rn50's own warnings read; other levels in brackets (``[error] TensorRT: …``), so that a
    library's logged error never reads as the one line a failed command ends with."""

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname.lower()
        return f"{level}: {record.getMessage()}" if level == "warning" else f"[{level}] {record.getMessage()}"


# Loggers whose warnings are a library's, not rn50's findings: Python warnings (Pillow's DecompressionBombWarning),
# matplotlib's "created a temporary cache directory" with a read-only HOME, torchao's import-time "Failed to load"
# its CUDA kernels and "Detected no triton" on a CPU machine, torch's pytree deprecation that torchao triggers.
# Shown with --verbose.
THIRD_PARTY_LOGGERS = ("py.warnings", "matplotlib", "torchao", "torch.utils._pytree")


def _not_a_library_on_the_root_logger(record: logging.LogRecord) -> bool:
    """A library that logs through the root logger (OpenVINO's telemetry: "Failed to create directory for
    openvino_telemetry file" with a read-only HOME) speaks for itself, not for rn50: shown with --verbose only."""
    return record.name != "root" or Path(record.pathname).parent.name == "rn50" or "/rn50/" in record.pathname


def print_version(value: bool) -> None:
    """--version, alone or before a command: run while the line is parsed, so no command is required."""
    if value:
        out.print(f"rn50 {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    """The command line, built from ``COMMANDS`` and the runtime table as they are now."""
    app = typer.Typer(
        name="rn50",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        help="ResNet-50 from PyTorch to deployed engines — ONNX Runtime (CPU, CUDA), TensorRT, OpenVINO, served on "
        "Triton Inference Server — with parity and latency proof for each.",
    )

    @app.callback()
    def main_options(
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress and show tracebacks.")] = False,
        version: Annotated[
            bool, typer.Option("--version", is_eager=True, callback=print_version, help="Print the version.")
        ] = False,
    ) -> None:
        STATE["verbose"], STATE["shown"] = verbose, False
        handler = RichHandler(console=err, show_time=False, show_path=False, show_level=False, markup=False)
        handler.setFormatter(_LevelFormatter())
        if not verbose:
            handler.addFilter(_not_a_library_on_the_root_logger)
        logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler], force=True)
        # Libraries' Python warnings (Pillow's DecompressionBombWarning, matplotlib's cache) are theirs, not rn50's
        # findings: logged, and shown with --verbose only.
        logging.captureWarnings(True)
        for name in THIRD_PARTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING if verbose else logging.ERROR)

    for command in COMMANDS:
        app.command(command.name)(callback(command))
    return app


app = build_app()
use_vocabulary(VOCABULARY)


def _interrupt(signum: int, frame: Any) -> None:
    """Ctrl-C and SIGTERM alike: partial files removed, lock released, exit 130. The flag outlives the
    KeyboardInterrupt, so that a library that swallows it cannot turn an interrupted run into a finished one."""
    from rn50.errors import INTERRUPT, deferring

    INTERRUPT.set()
    if not deferring():  # else raised when the steps that must land together have landed
        raise KeyboardInterrupt


def main() -> None:
    # ONNX Runtime's telemetry prints a coloured warning on stderr when it cannot keep its device id (a read-only
    # HOME), at import, before any logger of rn50's or ORT's can take it; rn50 runs offline work and sends nothing
    # itself: off unless the user set ORT_DISABLE_TELEMETRY.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    app(prog_name="rn50")


if __name__ == "__main__":
    main()
