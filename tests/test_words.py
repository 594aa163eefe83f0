"""The command line is spelled in one place: below the command layer, messages name commands and options by identity
(rn50.words), and every such name is one the command line as built has."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import rn50
import rn50.words as words
from rn50.cli import VOCABULARY

PACKAGE = Path(rn50.__file__).parent
# The command layer and above may spell the command line: they declare it.
COMMAND_LAYER = {"commands", "cli.py", "api.py", "__main__.py"}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
COMMAND = re.compile(r"\brn50 ([a-z][a-z0-9-]*)")


def library_modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.relative_to(PACKAGE).parts[0] not in COMMAND_LAYER]


def docstrings(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, kinds)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def spelled_out() -> list[str]:
    """Every ``--flag`` of rn50's and ``rn50 <command>`` written out in a string below the command layer (docstrings
    are for whoever reads the code and are left alone)."""
    flags = {d for scope in VOCABULARY.values() for decls in scope.values() for d in decls}
    found = []
    for path in library_modules():
        tree = ast.parse(path.read_text())
        skip = docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                hits = [f for f in FLAG.findall(node.value) if f in flags]
                hits += [f"rn50 {c}" for c in COMMAND.findall(node.value) if c in VOCABULARY]
                found += [f"{path.relative_to(PACKAGE)}:{node.lineno}: {hit}" for hit in hits]
    return found


def references() -> list[tuple[str, str | None, list[tuple[str, bool]]]]:
    """(where, command, [(option keyword, on?)]) of every ``cmd(...)``/``opt(...)`` call in the library."""
    found = []
    for path in library_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("cmd", "opt")):
                continue
            where = f"{path.relative_to(PACKAGE)}:{node.lineno}"
            first = node.args[0]
            assert isinstance(first, ast.Constant), f"{where}: name the command or option literally"
            if node.func.id == "cmd":
                opts = [
                    (k.arg or "", not (isinstance(k.value, ast.Constant) and k.value.value is False))
                    for k in node.keywords
                ]
                found.append((where, str(first.value), opts))
            else:
                off = len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and node.args[1].value is False
                found.append((where, None, [(str(first.value), not off)]))
    return found


def test_no_command_line_spelled_below_the_command_layer() -> None:
    assert spelled_out() == []


def test_the_scan_sees_a_spelled_flag(tmp_path: Path) -> None:
    """The scan is not vacuous: the words it looks for are the command line's own."""
    assert "--keep-float" in VOCABULARY["quantize"]["keep_float"]
    assert "build-trt" in VOCABULARY
    assert FLAG.findall("pass --keep-float conv1") == ["--keep-float"]
    assert COMMAND.findall("run `rn50 build-trt --int8`") == ["build-trt"]


def test_every_reference_names_what_the_command_line_has() -> None:
    refs = references()
    assert len(refs) > 100  # the library's messages do name the command line, through rn50.words
    wrong = []
    for where, command, options in refs:
        if command is not None and command not in VOCABULARY:
            wrong.append(f"{where}: no command {command}")
            continue
        scopes = [VOCABULARY[command]] if command else list(VOCABULARY.values())
        for name, on in options:
            decls = next((s[name] for s in scopes if name in s), None)
            if decls is None:
                wrong.append(f"{where}: no option {name}" + (f" in rn50 {command}" if command else ""))
            elif not on and len(decls) < 2:
                wrong.append(f"{where}: {name} has no off side")
    assert wrong == []


def test_the_api_rule_spells_as_the_command_line_declares() -> None:
    """A message formatted before the command line is built (the library on its own) reads the same."""
    differ = []
    for command, scope in VOCABULARY.items():
        for name, decls in scope.items():
            saved = words._USED[:]
            try:
                words._USED.clear()
                ruled = [str(words.opt(name)), *([str(words.opt(name, False))] if len(decls) > 1 else [])]
            finally:
                words._USED[:] = saved
            if tuple(ruled) != decls:
                differ.append(f"{command}: {name} {decls} vs {ruled}")
    assert differ == []


@pytest.mark.parametrize(
    ("words_", "text"),
    [
        (words.cmd("quantize", int8=True, target="tensorrt"), "rn50 quantize --int8 --target tensorrt"),
        (words.cmd("export", simplify=False, out="dir"), "rn50 export --no-simplify --out dir"),
        (words.cmd("quantize", int8=True, keep_float=["conv1", "fc"]), "rn50 quantize --int8 --keep-float conv1,fc"),
        (words.opt("cuda_graphs", False), "--no-cuda-graphs"),
        (words.opt("max_batch", 64), "--max-batch 64"),
    ],
)
def test_spelling(words_: words.Words, text: str) -> None:
    assert str(words_) == text
    assert f"run `{words_}`" == f"run `{text}`"
