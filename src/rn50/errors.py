"""Typed errors. Each says what was received, what was expected, and the fix.

Exit codes (the CLI maps them): 0 ok, 1 a check failed, 2 bad input or usage, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

# Set by the CLI's SIGINT/SIGTERM handler. A library may swallow the KeyboardInterrupt the handler raises
# (torch.export catches it and retries another way): writes check this flag before they commit.
INTERRUPT = threading.Event()
# How many ``uninterrupted`` blocks are running (they nest: a file's landing records it, and the manifest's own
# write is atomic too): steps that must happen together (a file replaced and the manifest entry that records it), so
# an interrupt waits until they are done.
_DEFERRING = [0]


def deferring() -> bool:
    return _DEFERRING[0] > 0


def check_interrupt() -> None:
    """Raise KeyboardInterrupt if an interrupt arrived, even one a library swallowed (not inside ``uninterrupted``)."""
    if INTERRUPT.is_set() and not deferring():
        raise KeyboardInterrupt


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block has run (it must be short), then interrupt: a new artifact and the
    manifest entry that records it land together, or neither does."""
    _DEFERRING[0] += 1
    try:
        yield
    finally:
        _DEFERRING[0] -= 1
    check_interrupt()


class Rn50Error(Exception):
    """Base of every error rn50 raises on purpose."""

    exit_code = 2
    label = "error"  # how the one line starts
    outcome: Any = None  # rn50.api: the result a failed check came with (a parity report below its thresholds)

    def __init__(self, problem: str, *, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.problem} — {self.fix}" if self.fix else self.problem


class UsageError(Rn50Error):
    """Bad input: a file, option or value the user gave."""


class EnvironmentProblem(Rn50Error):
    """Something missing on this machine (a package, a GPU, a provider)."""


class CheckFailed(Rn50Error):
    """A check ran and failed (parity below threshold, export verification)."""

    exit_code = 1


class Interrupted(Rn50Error):
    """Ctrl-C or SIGTERM: the step was abandoned and nothing half-written was kept (exit 130, the shell's
    convention for an interrupt)."""

    exit_code = 130


class Stopped(Interrupted):
    """A server stopped by Ctrl-C or SIGTERM, the way a server is stopped: said as such, not as an error (exit 130)."""

    label = "stopped"
