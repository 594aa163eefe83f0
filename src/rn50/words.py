"""Command-line words in the library's messages, as data.

A message below the command layer that tells the user what to run names the command and its options by identity —
``cmd("quantize", int8=True, target="tensorrt")``, ``opt("threads")`` — never by their spelling: an option's name
is its keyword in the Python API (``--max-batch`` → ``max_batch``; an on/off pair by its first name, ``False`` for
the off side). The command layer spells them from the flags it declares (``use``, called by ``rn50.cli``), so a
flag's spelling lives in one place; until it does (the library used on its own) the API's own rule spells them
(``max_batch`` → ``--max-batch``). tests/test_words.py holds every reference in the package to the command line as
built, and fails on a ``--flag`` or ``rn50 <command>`` written out below the command layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# command name → option keyword → its spellings: (on,) or (on, off) for an on/off pair; "" holds rn50's own options
Vocabulary = Mapping[str, Mapping[str, tuple[str, ...]]]
_USED: list[Vocabulary] = []


def use(vocabulary: Vocabulary) -> None:
    """Spell every later message with the command line's own declarations (``rn50.cli`` calls it once built)."""
    _USED[:] = [vocabulary]


def _spelled(command: str | None, name: str, on: bool) -> str:
    for vocabulary in _USED:
        scopes = [vocabulary.get(command or "", {})] if command else list(vocabulary.values())
        for scope in scopes:
            if name in scope:
                decls = scope[name]
                return decls[0] if on or len(decls) < 2 else decls[1]
    dashed = name.replace("_", "-")
    return f"--{dashed}" if on else f"--no-{dashed}"


def _value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class Words:
    """A command line, or one option of one, named by identity; ``str()`` spells it."""

    command: str | None
    options: tuple[tuple[str, Any], ...] = ()

    def spelled(self) -> str:
        parts = [f"rn50 {self.command}"] if self.command else []
        for name, value in self.options:
            if isinstance(value, bool):
                parts.append(_spelled(self.command, name, value))
            else:
                parts += [_spelled(self.command, name, True), _value(value)]
        return " ".join(parts)

    def __str__(self) -> str:
        return self.spelled()

    def __format__(self, spec: str) -> str:
        return format(self.spelled(), spec)


def cmd(command: str, **options: Any) -> Words:
    """``rn50 <command>`` with its options: ``True`` a switch, ``False`` its off side, anything else a value."""
    return Words(command, tuple(options.items()))


def opt(name: str, value: Any = True) -> Words:
    """One option on its own (``--threads``, ``--out DIR``), by its keyword."""
    return Words(None, ((name, value),))
