"""rn50 from Python (notebooks, CI scripts): every command as a function taking its flags as keyword arguments and
returning the outcome the command line renders — the same report objects, the same checks before any work, the same
work-directory lock and manifest::

    import rn50

    rn50.export(out="rn50-out", ir=True)
    outcome = rn50.parity(out="rn50-out", runtime=["onnxruntime-cpu"], count=16, check=False)
    outcome.report.passed, outcome.to_dict()

A keyword is a flag's name without dashes (``--max-batch`` → ``max_batch``; an on/off pair by its first name:
``simplify=False``); a list flag takes a list or a comma string. ``out`` is the work directory. A bad value raises
the error the command line would print (``rn50.errors.UsageError``, with ``problem`` and ``fix``); a check that
fails (parity below its thresholds) raises ``CheckFailed`` carrying the outcome (``error.outcome``) unless
``check=False``, when the outcome is returned and ``outcome.error`` says it."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rn50.artifacts import DEFAULT_WORKDIR
from rn50.cli import COMMANDS, Command, parameters, rebuild
from rn50.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

# The commands a script calls; `rn50 serve` runs until it is stopped, so it stays a command-line tool.
NAMES = tuple(c.name.replace("-", "_") for c in COMMANDS if c.name != "serve")


def run(command: str, *, out: str | Path = DEFAULT_WORKDIR, check: bool = True, **given: Any) -> Any:
    """Run the command named ``command`` (``"parity"``, ``"build-trt"`` or ``"build_trt"``) with ``given`` as its
    flags; returns its outcome."""
    found = next((c for c in COMMANDS if c.name.replace("-", "_") == command.replace("-", "_")), None)
    if found is None or found.name == "serve":
        raise UsageError(f"no rn50 command {command!r} for Python", fix=f"use one of {', '.join(NAMES)}")
    return _run(found, Path(out), check, given)


def _run(command: Command, out: Path, check: bool, given: dict[str, Any]) -> Any:
    from rn50.artifacts import WorkDir

    default = command.options() if command.options else None
    declared = parameters(default) if default is not None else []
    params = {p.name: p.default for p in declared}
    lists = {p.name for p in declared if "list[" in str(typing.get_args(p.annotation)[0])}
    unknown = sorted(set(given) - set(params))
    if unknown:
        raise UsageError(
            f"rn50.{command.name.replace('-', '_')}() has no option {', '.join(unknown)}",
            fix=f"use {', '.join(sorted(params)) or 'no option'} (and out=, check=)",
        )
    values = params | {
        k: [v] if k in lists and isinstance(v, str) else list(v) if isinstance(v, tuple) else v
        for k, v in given.items()
    }
    options = rebuild(default, values) if default is not None else None
    if options is not None:
        options.check()  # every option, before any work directory is created or model built
    workdir = None
    if command.workdir is not None:
        workdir = WorkDir(out) if command.workdir == "new" else WorkDir.existing(out, write=command.workdir != "read")
    if workdir is None or command.workdir == "read":
        outcome = command.run(options, workdir)
    else:
        with workdir.locked():
            outcome = command.run(options, workdir)
    error = outcome.error if check and outcome is not None else None
    if error is not None:
        error.outcome = outcome  # the result the failed check came with
        raise error
    return outcome


def _function(command: Command) -> Callable[..., Any]:
    def call(*, out: str | Path = DEFAULT_WORKDIR, check: bool = True, **given: Any) -> Any:
        return _run(command, Path(out), check, given)

    default = command.options() if command.options else None
    flags = [
        inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default)
        for p in (parameters(default) if default is not None else [])
    ]
    fixed = [
        inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, default=DEFAULT_WORKDIR),
        inspect.Parameter("check", inspect.Parameter.KEYWORD_ONLY, default=True),
    ]
    call.__signature__ = inspect.Signature(fixed + flags)  # type: ignore[attr-defined]
    call.__name__ = call.__qualname__ = command.name.replace("-", "_")
    call.__doc__ = (inspect.getdoc(command.run) or "") + "\n\nKeywords: the command's flags (see rn50.api)."
    return call


FUNCTIONS: dict[str, Callable[..., Any]] = {
    c.name.replace("-", "_"): _function(c) for c in COMMANDS if c.name.replace("-", "_") in NAMES
}


def __getattr__(name: str) -> Any:
    if name in FUNCTIONS:
        return FUNCTIONS[name]
    raise AttributeError(f"module 'rn50.api' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *FUNCTIONS])
