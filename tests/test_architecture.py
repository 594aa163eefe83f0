"""The layers point down and nothing imports in a circle: every import of the package (function-level and
type-checking ones included) read from the source, checked against the layer table. The README's "Architecture"
section describes the same table.

import-linter would be the library for this, but its import graph (grimp) walks the ``rn50`` folder and cannot see
``rn50.exporter``, ``rn50.calibration`` and ``rn50.runtimes``, which pyproject.toml maps from folders of their own;
this test reads pyproject's mapping and does the two checks import-linter's ``layers`` and ``acyclic_siblings``
contracts would."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib: Any = pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10 needs tomli")

ROOT = Path(__file__).resolve().parent.parent
# Top to bottom. A module may import from its own layer and the layers below it; "|" separates siblings that may
# not import each other. Everything not named here is the core (rn50/*.py: errors, work directory, metrics, …).
LAYERS = [
    ("rn50.cli", "rn50.__main__"),
    ("rn50.commands",),
    ("rn50.reports", "|", "rn50.evaluation"),
    ("rn50.results",),
    ("rn50.serving",),
    ("rn50.calibration",),
    ("rn50.exporter",),
    ("rn50.runtimes",),
]
CORE = "core"


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name, from pyproject.toml's package-dir mapping."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = config["package-dir"]
    found: dict[str, Path] = {}
    for package in config["packages"]:
        top = next(p for p in sorted(folders, key=len, reverse=True) if package == p or package.startswith(p + "."))
        folder = (
            ROOT / folders[top] / Path(*package[len(top) + 1 :].split(".")) if package != top else ROOT / folders[top]
        )
        for file in folder.glob("*.py"):
            found[package if file.stem == "__init__" else f"{package}.{file.stem}"] = file
    return found


def imports(known: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(importer, imported module, line) for every import of one package module by another."""
    out = []
    for name, file in known.items():
        package = name if file.stem == "__init__" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                    )
                for alias in node.names:
                    target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                    if target in known and target != name:
                        out.append((name, target, node.lineno))
            elif isinstance(node, ast.Import):
                out += [(name, a.name, node.lineno) for a in node.names if a.name in known and a.name != name]
    return out


def layer_of(module: str) -> tuple[int, str]:
    """(layer index, the layer entry the module belongs to); the core is below every layer."""
    for i, entries in enumerate(LAYERS):
        for entry in entries:
            if entry != "|" and (module == entry or module.startswith(entry + ".")):
                return i, entry
    return len(LAYERS), CORE


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Path], list[tuple[str, str, int]]]:
    known = modules()
    return known, imports(known)


def test_the_package_is_read_whole(graph: tuple[dict[str, Path], list[tuple[str, str, int]]]) -> None:
    known, found = graph
    assert {"rn50.cli", "rn50.exporter.onnx_file", "rn50.calibration.quantized", "rn50.runtimes.registry"} <= set(known)
    assert ("rn50.calibration.quantized", "rn50.exporter.onnx_file") in {(a, b) for a, b, _ in found}


def test_layers_only_point_down(graph: tuple[dict[str, Path], list[tuple[str, str, int]]]) -> None:
    known, found = graph
    upward = []
    for importer, imported, line in found:
        (mine, my_entry), (theirs, their_entry) = layer_of(importer), layer_of(imported)
        if theirs < mine or (theirs == mine and my_entry != their_entry and "|" in LAYERS[mine]):
            upward.append(
                f"{known[importer].relative_to(ROOT)}:{line}: {importer} imports {imported} ({my_entry} → "
                f"{their_entry})"
            )
    assert not upward, "imports against the layer table:\n" + "\n".join(upward)


def test_no_import_cycle_between_modules_or_packages(graph: tuple[dict[str, Path], list[tuple[str, str, int]]]) -> None:
    _, found = graph
    module_edges: dict[str, set[str]] = {}
    package_edges: dict[str, set[str]] = {}
    for importer, imported, _line in found:
        module_edges.setdefault(importer, set()).add(imported)
        a, b = layer_of(importer)[1], layer_of(imported)[1]
        if a != b:
            package_edges.setdefault(a, set()).add(b)
    assert cycles(module_edges) == []
    assert cycles(package_edges) == []


def test_the_checks_catch_what_they_should() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer_of("rn50.reports.parity_report") == (2, "rn50.reports")
    assert layer_of("rn50.metrics") == (len(LAYERS), CORE)
