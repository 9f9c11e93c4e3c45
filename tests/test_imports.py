"""The package's structure: every module imports on its own, no library module imports the
command line, the import graph has no cycle; and the one entry ``python -m seq2seq``."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "seq2seq"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))  # __init__ is the package itself
ENTRY_POINTS = {"__main__", "cli"}  # the only modules that may import seq2seq.cli


def python(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "WANDB_MODE": "disabled"})


KINDS = ("module", "function", "type")  # at import time; inside a function; under ``if TYPE_CHECKING``


class _Imports(ast.NodeVisitor):
    """The package's modules one module imports, each with the kind of its first-ranked import."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.found: dict[str, str] = {}
        self.kind = "module"

    def add(self, name: str) -> None:
        known = self.found.get(name)
        if name != self.module and (known is None or KINDS.index(self.kind) < KINDS.index(known)):
            self.found[name] = self.kind

    def within(self, kind: str, nodes: list[ast.stmt]) -> None:
        outer, self.kind = self.kind, max(kind, self.kind, key=KINDS.index)  # the weaker of the two
        for node in nodes:
            self.visit(node)
        self.kind = outer

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.within("function", node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
                (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
            self.within("type", node.body)
            self.within(self.kind, node.orelse)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            parts = alias.name.split(".")
            if parts[0] == "seq2seq":
                self.add(parts[1] if len(parts) > 1 else "__init__")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level > 1:
            pytest.fail(f"seq2seq/{self.module}.py:{node.lineno}: an import from above the package")
        parts = (node.module or "").split(".")
        if node.level == 0 and parts[0] != "seq2seq":
            return
        inner = parts[1:] if node.level == 0 else [p for p in parts if p]
        if inner:  # from .x import y / from seq2seq.x import y
            self.add(inner[0])
        else:  # from . import x / from seq2seq import x: x a module, or a name of __init__
            for alias in node.names:
                self.add(alias.name if alias.name in MODULES else "__init__")


def imported_modules(module: str) -> dict[str, str]:
    """The package's modules that ``module`` imports, relatively or absolutely, anywhere in its
    source, each with its kind (:data:`KINDS`): at import time (module level, ``__main__``
    block included), inside a function only, or under ``if TYPE_CHECKING`` only."""
    return imports_in(module, (PACKAGE / f"{module}.py").read_text(encoding="utf-8"))


def imports_in(module: str, source: str) -> dict[str, str]:
    visitor = _Imports(module)
    visitor.visit(ast.parse(source))
    return visitor.found


def import_graph() -> dict[str, dict[str, str]]:
    return {m: imported_modules(m) for m in MODULES}


def shortest_path(graph: dict[str, dict[str, str]], start: str, goal: str) -> list[str] | None:
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth first
        if goal in paths:
            return paths[goal]
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, {})):
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    return paths.get(goal)


def cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """For each import ``a -> b`` on a cycle, the shortest such cycle ``[a, b, ..., a]``; each
    cycle once, from its first module by name."""
    found = set()
    for a in graph:
        for b in graph[a]:
            back = shortest_path(graph, b, a)
            if back is not None:
                ring = [a, *back[:-1]]
                first = ring.index(min(ring))
                ring = ring[first:] + ring[:first]
                found.add((*ring, ring[0]))
    return sorted(map(list, found))


def describe(cycle: list[str], graph: dict[str, dict[str, str]]) -> str:
    return cycle[0] + "".join(f" -({graph[a][b]})-> {b}" for a, b in zip(cycle, cycle[1:]))


# --- the modules -----------------------------------------------------------------------------


@pytest.mark.smoke  # a fresh interpreter
@pytest.mark.parametrize("module", MODULES)
def test_every_module_imports_in_a_fresh_interpreter(module: str) -> None:
    name = "seq2seq" if module == "__init__" else f"seq2seq.{module}"
    result = python("-c", f"import {name}")
    assert result.returncode == 0, f"import {name} failed:\n{result.stderr}"


def test_no_library_module_imports_the_command_line() -> None:
    offenders = sorted(m for m in MODULES if m not in ENTRY_POINTS and "cli" in imported_modules(m))
    assert offenders == [], f"these modules import seq2seq.cli (use seq2seq.errors): {offenders}"


def test_the_import_graph_has_no_cycle() -> None:
    """Lazy (function-level) and TYPE_CHECKING imports count: they hide a cycle, not remove it."""
    graph = import_graph()
    assert graph["corpus"]["hub"] == "function" and graph["evaluation"]["errors"] == "module"
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(describe(c, graph) for c in found)


def test_imports_are_found_with_their_kind() -> None:
    source = """
import seq2seq.config
from typing import TYPE_CHECKING
from . import batching, __version__
from .model import Seq2Seq
if TYPE_CHECKING:
    from .translation import Translator
    from seq2seq.model import ModelConfig
def f():
    from seq2seq import search
    from .translation import Translator
    if TYPE_CHECKING:
        import seq2seq.tracking
class C:
    from .device import select_device
if __name__ == "__main__":
    from .cli import train_main
"""
    assert imports_in("evaluation", source) == {
        "config": "module", "batching": "module", "__init__": "module", "model": "module", "translation": "function",
        "search": "function", "tracking": "type", "device": "module", "cli": "module"}


def test_cycles_are_found() -> None:
    graph = {"a": {"b": "module"}, "b": {"c": "function"}, "c": {"a": "type", "d": "module"}, "d": {},
             "e": {"f": "module"}, "f": {"e": "module"}}
    assert cycles(graph) == [["a", "b", "c", "a"], ["e", "f", "e"]]
    assert describe(["a", "b", "c", "a"], graph) == "a -(module)-> b -(function)-> c -(type)-> a"
    graph = {"a": {"b": "module"}, "b": {"a": "type", "c": "module"}, "c": {"b": "function", "a": "module"}}
    assert cycles(graph) == [["a", "b", "a"], ["a", "b", "c", "a"], ["b", "c", "b"]]
    assert cycles({"a": {"b": "module", "c": "module"}, "b": {"c": "module"}, "c": {}}) == []


@pytest.mark.smoke  # a fresh interpreter
def test_seq2seq_errors_is_light() -> None:
    """Any module may use seq2seq.errors: it imports no other module of the package until an error is reported."""
    kinds = imported_modules("errors")
    assert kinds and set(kinds.values()) == {"function"}, kinds
    result = python("-c", "import sys, seq2seq.errors\n"
                          "print(sorted(m for m in sys.modules if m.startswith('seq2seq')))")
    # seq2seq.malloc: the package's __init__ tunes the allocator with it (it imports ctypes and os only)
    assert result.stdout.strip() == "['seq2seq', 'seq2seq.errors', 'seq2seq.malloc']", result.stderr


# --- python -m seq2seq -------------------------------------------------------------------------


@pytest.mark.smoke  # a fresh interpreter
def test_help_lists_every_command_with_a_line_each() -> None:
    from seq2seq.__main__ import COMMANDS

    result = python("-m", "seq2seq", "--help")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "usage: python -m seq2seq <command> [args]"
    assert list(COMMANDS) == ["train", "translate", "evaluate", "download", "prepare", "sweep", "bench", "plots",
                             "results", "average", "serve", "gpu_check", "generate", "ngram"]
    for name, text in COMMANDS.items():
        assert any(line.split() == [name, *text.split()] for line in lines), f"{name} not listed: {result.stdout}"
    assert python("-m", "seq2seq", "-h").stdout == result.stdout


@pytest.mark.smoke  # a fresh interpreter
def test_unknown_command_is_one_line_and_exit_status_2() -> None:
    result = python("-m", "seq2seq", "trian", "--config", "x.yaml")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: unknown command 'trian'")
    assert "train, translate, evaluate" in result.stderr
    no_command = python("-m", "seq2seq")
    assert no_command.returncode == 2 and no_command.stderr.startswith("usage: python -m seq2seq <command>")


@pytest.mark.smoke  # a fresh interpreter
def test_a_command_gets_its_arguments() -> None:
    result = python("-m", "seq2seq", "evaluate", "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: python -m seq2seq.evaluation "), result.stderr
    result = python("-m", "seq2seq", "prepare", "--config", "missing.yaml", "--out", "unused")
    assert (result.returncode, result.stderr.count("\n")) == (1, 1) and result.stderr.startswith("error: ")


@pytest.mark.smoke  # a fresh interpreter
def test_the_entry_loads_no_command_until_one_runs() -> None:
    result = python("-c", "import sys, seq2seq.__main__; print(sorted(m for m in sys.modules if m.startswith("
                          "('seq2seq', 'torch'))))")
    assert result.stdout.strip() == "['seq2seq', 'seq2seq.__main__', 'seq2seq.malloc']", result.stderr


def test_every_module_with_a_main_is_a_command() -> None:
    from seq2seq.__main__ import COMMANDS, command_main

    with_main = {m for m in MODULES if m != "__main__" and any(
        isinstance(n, ast.FunctionDef) and n.name == "main"
        for n in ast.parse((PACKAGE / f"{m}.py").read_text(encoding="utf-8")).body)}
    commands = {command_main(name).__module__.removeprefix("seq2seq.") for name in COMMANDS}
    assert with_main <= commands, f"modules with a main but no command: {sorted(with_main - commands)}"
    with pytest.raises(KeyError):
        command_main("nope")
