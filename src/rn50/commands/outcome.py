"""What every command hands back to whoever called it, and what it may tell them while it runs.

A command is a library function ``run(options, workdir, ui) -> Outcome`` that takes options already checked: its
caller (``rn50.cli``, ``rn50.api``; the pipeline checks its own options for every step) calls ``options.check()``
once, before any work directory is opened, so every option is refused or accepted in one place. The outcome holds
the result; its ``sections`` are what a terminal shows (the same ``Section`` objects the report files are rendered
from), its ``to_dict`` is what ``--json`` prints (the report's own dictionary where the command writes one), and
``error`` is the failure the command ends with after its result is shown (a failed check, exit 1). ``Ui`` is how a
command says what it is doing: the CLI shows it as a spinner and progress bars on a terminal and as lines in a
log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from rn50.errors import Rn50Error
    from rn50.reports.render import Section


class Outcome(Protocol):
    def sections(self) -> list[Section]: ...

    def to_dict(self) -> Any: ...

    @property
    def error(self) -> Rn50Error | None: ...


R = TypeVar("R")


@dataclass(frozen=True)
class ReportOutcome(Generic[R]):
    """The outcome of a command that writes a report (parity, profile, loadtest, tune): its typed result and the
    files written. A terminal shows the report's own sections, then what was written; ``--json`` prints the report's
    JSON form. A subclass says which sections (``report_sections``), which JSON (``to_dict``) and its ``error``."""

    report: R
    written: list[Path]

    def report_sections(self) -> list[Section]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def sections(self) -> list[Section]:
        from rn50.reports.render import Section

        return [*self.report_sections(), Section("", paragraphs=["wrote " + ", ".join(map(str, self.written))])]


def _quiet(*_args: Any) -> None:
    return None


def _no_bar(_label: str, _total: int) -> Callable[[int], None]:
    return _quiet


@dataclass(frozen=True)
class Ui:
    """``status``: what the command is doing now (transient); ``note``: a milestone worth a line in a log (a pipeline
    step starting and ending); ``show``: an outcome to show at once, before the command ends (a server that is ready);
    ``bar(label, total)``: a progress bar, returning the function that advances it."""

    status: Callable[[str], None] = field(default=_quiet)
    note: Callable[[str], None] = field(default=_quiet)
    show: Callable[[Outcome], None] = field(default=_quiet)
    bar: Callable[[str, int], Callable[[int], None]] = field(default=_no_bar)


QUIET = Ui()
