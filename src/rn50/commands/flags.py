"""How an option object's field is given on the command line: its flag, its help and how the typed text becomes the
field's value. Declared once: on a command's own option field (``flag(...)`` in place of ``field(...)``), or, for an
option object of the library, in this layer by ``declare`` (the library's fields keep plain defaults and name no
flag); every command whose options hold that object takes the same flag with the same help and the same default.
``rn50.cli`` reads these declarations and builds the commands' flags from them. Nothing here parses anything."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

FLAG = "rn50.flag"  # the metadata key


@dataclass(frozen=True)
class Flag:
    decls: tuple[str, ...]  # "--images", or "--simplify/--no-simplify"; a short name may follow ("-o")
    help: str | Callable[[], str]  # a callable is read when the CLI is built (help derived from a table)
    parse: Callable[[Any], Any] | None = None  # the typed value → the field's value (None given: the field's default)
    cli_type: Any = None  # the type the command line holds, when not the field's own (e.g. list[str] for a tuple)
    choices: dict[str, Any] | None = None  # exclusive on/off flags, each setting the field to its value

    @property
    def name(self) -> str:
        """The keyword the CLI passes it under: the first flag without dashes (``--max-batch`` → ``max_batch``)."""
        first = self.decls[0].split("/")[0] if self.decls else next(iter(self.choices or {"": None}))
        return first.lstrip("-").replace("-", "_")

    def text(self) -> str:
        return self.help() if callable(self.help) else self.help


def flag(
    *decls: str,
    help: str | Callable[[], str],
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
    parse: Callable[[Any], Any] | None = None,
    cli_type: Any = None,
    choices: dict[str, Any] | None = None,
) -> Any:
    """A dataclass field that is also a command-line flag: ``flag("--images", default=None, help="…")``."""
    meta = {FLAG: Flag(tuple(decls), help, parse, cli_type, choices)}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# Flags of the library's option objects (ExportConfig, Settings, Endpoints, Batching, BuildOptions): the library
# declares plain fields with their defaults; the command layer says which flag sets each (``declare``), so no flag
# is named below this layer.
_DECLARED: dict[tuple[type, str], Flag] = {}


def declare(owner: type, **fields: Flag) -> None:
    """The flags of ``owner``'s fields, by field name; the defaults stay the fields' own."""
    known = {f.name for f in dataclasses.fields(owner)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise TypeError(f"{owner.__name__} has no field {', '.join(unknown)}")
    for name, declared in fields.items():
        _DECLARED[(owner, name)] = declared


def option(
    *decls: str,
    help: str | Callable[[], str],
    parse: Callable[[Any], Any] | None = None,
    cli_type: Any = None,
    choices: dict[str, Any] | None = None,
) -> Flag:
    """A flag for ``declare``: ``option("--port", help="HTTP port.")``."""
    return Flag(tuple(decls), help, parse, cli_type, choices)


def flag_of(field: dataclasses.Field[Any], owner: type | None = None) -> Flag | None:
    """The flag that sets ``field``: declared on the field (``flag``), or for a library object by ``declare``."""
    found = field.metadata.get(FLAG)
    if isinstance(found, Flag):
        return found
    return _DECLARED.get((owner, field.name)) if owner is not None else None
