"""The package's structure: every module imports on its own and changes nothing when imported,
imports point down through the subpackages' layers, the import graph has no cycle; and the one
entry ``python -m seq2seq``."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "seq2seq"


def module_name(path: Path) -> str:
    """seq2seq/training/trainer.py -> seq2seq.training.trainer; seq2seq/data/__init__.py -> seq2seq.data."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
MODULES = sorted(FILES)
# Each subpackage's layer: a module imports only from its own layer or below (runtime is the bottom).
LAYERS = {"runtime": 0, "config": 1, "data": 2, "model": 3, "translation": 4, "training": 5, "cli": 6,
          "serve": 7, "tools": 8}
TOP = 9  # seq2seq/__init__.py and __main__.py


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 and parts[1] in LAYERS else TOP


def python(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env or {**os.environ, "WANDB_MODE": "disabled"})


KINDS = ("module", "function", "type")  # at import time; inside a function; under ``if TYPE_CHECKING``


class _Imports(ast.NodeVisitor):
    """The package's modules one module imports, each with the kind of its first-ranked import."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.found: dict[str, str] = {}
        self.kind = "module"

    def add(self, name: str) -> None:
        while name not in FILES and "." in name:  # a name defined in a module: the module
            name = name.rpartition(".")[0]
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
            if alias.name.split(".")[0] == "seq2seq":
                self.add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            if node.level - 1 >= len(base):
                pytest.fail(f"{self.module}:{node.lineno}: an import from above the package")
            base = base[:len(base) - (node.level - 1)]
            target = ".".join([*base, *([node.module] if node.module else [])])
        elif (node.module or "").split(".")[0] == "seq2seq":
            target = node.module or ""
        else:
            return
        for alias in node.names:  # from pkg import submodule, or from module import name
            full = f"{target}.{alias.name}"
            self.add(full if full in FILES else target)


def imports_in(module: str, source: str, is_package: bool = False) -> dict[str, str]:
    visitor = _Imports(module, is_package)
    visitor.visit(ast.parse(source))
    return visitor.found


def imported_modules(module: str) -> dict[str, str]:
    """The package's modules that ``module`` imports, relatively or absolutely, anywhere in its
    source, each with its kind (:data:`KINDS`): at import time (module level, ``__main__``
    block included), inside a function only, or under ``if TYPE_CHECKING`` only."""
    path = FILES[module]
    return imports_in(module, path.read_text(encoding="utf-8"), path.name == "__init__.py")


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
    result = python("-c", f"import {module}")
    assert result.returncode == 0, f"import {module} failed:\n{result.stderr}"


def test_every_subpackage_has_a_layer() -> None:
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages == set(LAYERS), f"subpackages without a layer, or layers without one: {packages ^ set(LAYERS)}"


def test_imports_point_down_through_the_layers() -> None:
    """Lazy (function-level) and TYPE_CHECKING imports count too."""
    upward = [f"{m} ({kind}) -> {target}" for m in MODULES if m.startswith("seq2seq.")
              for target, kind in imported_modules(m).items() if layer(target) > layer(m)]
    assert upward == [], "imports from a higher layer (LAYERS): " + "; ".join(upward)


def test_the_import_graph_has_no_cycle() -> None:
    """Lazy (function-level) and TYPE_CHECKING imports count: they hide a cycle, not remove it."""
    graph = import_graph()
    assert graph["seq2seq.data.corpus"]["seq2seq.data.hub"] == "function"
    assert graph["seq2seq.cli.evaluate"]["seq2seq.cli.errors"] == "module"
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(describe(c, graph) for c in found)


def test_imports_are_found_with_their_kind() -> None:
    source = """
import seq2seq.config
from typing import TYPE_CHECKING
from .. import data, __version__
from ..model.seq2seq import Seq2Seq
from . import evaluation
if TYPE_CHECKING:
    from .translator import Translator
    from seq2seq.data.batching import Batch
def f():
    from seq2seq.model.search import beam_search
    from .translator import Translator
    if TYPE_CHECKING:
        import seq2seq.training.tracking
class C:
    from ..runtime.device import select_device
if __name__ == "__main__":
    from ..cli import train
"""
    assert imports_in("seq2seq.translation.x", source) == {
        "seq2seq.config": "module", "seq2seq.data": "module", "seq2seq": "module", "seq2seq.model.seq2seq": "module",
        "seq2seq.translation.evaluation": "module", "seq2seq.translation.translator": "function",
        "seq2seq.data.batching": "type", "seq2seq.model.search": "function", "seq2seq.training.tracking": "type",
        "seq2seq.runtime.device": "module", "seq2seq.cli.train": "module"}


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
    """Any command may use seq2seq.cli.errors: it imports no other module of the package until an error is reported."""
    kinds = imported_modules("seq2seq.cli.errors")
    assert kinds and set(kinds.values()) == {"function"}, kinds
    result = python("-c", "import sys, seq2seq.cli.errors\n"
                          "print(sorted(m for m in sys.modules if m.startswith('seq2seq')))")
    assert result.stdout.strip() == "['seq2seq', 'seq2seq.cli', 'seq2seq.cli.errors']", result.stderr


# --- importing changes nothing ---------------------------------------------------------------

# An LD_PRELOAD shim that reports every mallopt call on stderr, then makes it.
MALLOPT_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
int mallopt(int param, int value) {
    static int (*real)(int, int);
    if (!real) real = (int (*)(int, int))dlsym(RTLD_NEXT, "mallopt");
    fprintf(stderr, "mallopt(%d, %d)\n", param, value);
    return real(param, value);
}
"""
# In a fresh interpreter: the environment before and after importing every module, then (if
# asked) after seq2seq.runtime.tune(); prints the variables that changed.
IMPORT_ALL = """
import importlib, os, sys
before = dict(os.environ)
for name in sys.argv[1].split(","):
    importlib.import_module(name)
if sys.argv[2] == "tune":
    import seq2seq.runtime
    seq2seq.runtime.tune()
print(sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)))
"""


@pytest.fixture(scope="module")
def mallopt_shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler for the mallopt shim")
    tmp = tmp_path_factory.mktemp("shim")
    (tmp / "shim.c").write_text(MALLOPT_SHIM)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(tmp / "shim.so"), str(tmp / "shim.c"), "-ldl"], check=True)
    return tmp / "shim.so"


def import_all(shim: Path, then: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GOMP_", "OMP_WAIT", "SEQ2SEQ_"))}
    env.update(LD_PRELOAD=str(shim), WANDB_MODE="disabled")
    importable = [m for m in MODULES if m != "seq2seq.__main__"]
    return python("-c", IMPORT_ALL, ",".join(importable), then, env=env, timeout=300)


@pytest.mark.smoke  # a fresh interpreter
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc and LD_PRELOAD")
def test_importing_every_module_changes_neither_the_environment_nor_malloc(mallopt_shim: Path) -> None:
    imported = import_all(mallopt_shim, "")
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "[]", f"the environment changed: {imported.stdout}"
    assert "mallopt(" not in imported.stderr, imported.stderr
    tuned = import_all(mallopt_shim, "tune")  # the same probe sees what tune() does
    assert tuned.returncode == 0, tuned.stderr
    assert "mallopt(-3, 33554432)" in tuned.stderr, tuned.stderr  # M_MMAP_THRESHOLD: 32 MiB
    assert tuned.stdout.strip() == "[]"  # torch had loaded: GOMP_SPINCOUNT would come too late, so it is left unset


@pytest.mark.smoke  # a fresh interpreter
def test_the_commands_tune_before_torch_loads(mallopt_shim: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GOMP_", "OMP_WAIT", "SEQ2SEQ_"))}
    probe = ("import os, sys, runpy; sys.argv = ['x', 'evaluate', '--help']\n"
             "try:\n    runpy.run_module('seq2seq', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "print('GOMP_SPINCOUNT', os.environ.get('GOMP_SPINCOUNT'))")
    result = python("-c", probe, env={**env, "LD_PRELOAD": str(mallopt_shim), "WANDB_MODE": "disabled"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "GOMP_SPINCOUNT 20000", result.stdout
    assert "mallopt(-3, 33554432)" in result.stderr, result.stderr


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
    assert result.returncode == 0 and result.stdout.startswith("usage: python -m seq2seq evaluate "), result.stderr
    result = python("-m", "seq2seq", "prepare", "--config", "missing.yaml", "--out", "unused")
    assert (result.returncode, result.stderr.count("\n")) == (1, 1) and result.stderr.startswith("error: ")


@pytest.mark.smoke  # a fresh interpreter
def test_the_entry_loads_no_command_until_one_runs() -> None:
    result = python("-c", "import sys, seq2seq.__main__; print(sorted(m for m in sys.modules if m.startswith("
                          "('seq2seq', 'torch'))))")
    assert result.stdout.strip() == "['seq2seq', 'seq2seq.__main__']", result.stderr


def test_every_module_with_a_main_is_a_command() -> None:
    from seq2seq.__main__ import COMMANDS, ENTRIES, command_main

    with_main = {m for m in MODULES if m != "seq2seq.__main__" and any(
        isinstance(n, ast.FunctionDef) and n.name == "main"
        for n in ast.parse(FILES[m].read_text(encoding="utf-8")).body)}
    commands = {"seq2seq." + ENTRIES[name].split(":")[0] for name in COMMANDS}
    assert with_main <= commands, f"modules with a main but no command: {sorted(with_main - commands)}"
    assert commands <= set(MODULES), f"commands whose module is missing: {sorted(commands - set(MODULES))}"
    with pytest.raises(KeyError):
        command_main("nope")


@pytest.mark.parametrize("name", ["train", "translate", "evaluate", "download", "prepare", "sweep", "bench", "plots",
                                  "results", "average", "serve", "gpu_check", "generate", "ngram"])
def test_every_command_help_ends_with_example_lines(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    from seq2seq.__main__ import COMMANDS, command_main

    assert name in COMMANDS
    with pytest.raises(SystemExit) as done:
        command_main(name)(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert "\nexamples:\n" in out, out
    lines = out.split("\nexamples:\n", 1)[1].splitlines()
    assert lines and all(line.startswith("  ") for line in lines), lines
    script = {"train": "train.py", "translate": "translate.py"}.get(name, f"-m seq2seq {name}")
    assert any(script in line for line in lines), lines


@pytest.mark.smoke  # a fresh interpreter
@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["evaluate", "--help"]], ids=" ".join)
def test_help_into_a_closed_pipe_is_no_traceback(args: list[str]) -> None:
    """``python -m seq2seq --help | head -1``: the reader closes the pipe before the help is written."""
    done = subprocess.Popen([sys.executable, "-m", "seq2seq", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "WANDB_MODE": "disabled"})
    assert done.stdout is not None and done.stderr is not None
    done.stdout.close()  # before the interpreter has started, let alone written
    err = done.stderr.read().decode()
    assert done.wait(timeout=120) == 0 and "Traceback" not in err, err
