"""Typed errors. Each says what was received, what was expected, and the fix.

Exit codes (the CLI maps them): 0 ok, 1 a check failed, 2 bad input or usage, 130 interrupted.
"""

from __future__ import annotations

import threading

# Set by the CLI's SIGINT/SIGTERM handler. A library may swallow the KeyboardInterrupt the handler raises
# (torch.export catches it and retries another way): writes check this flag before they commit.
INTERRUPT = threading.Event()


def check_interrupt() -> None:
    """Raise KeyboardInterrupt if an interrupt arrived, even one a library swallowed."""
    if INTERRUPT.is_set():
        raise KeyboardInterrupt


class Rn50Error(Exception):
    """Base of every error rn50 raises on purpose."""

    exit_code = 2
    label = "error"  # how the one line starts

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
