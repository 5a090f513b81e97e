"""Imports go one way: storage <- mailbox <- actors (DESIGN.md section 1); no module
imports itself back through others, TYPE_CHECKING imports included, and none is over
600 lines (section 5).

Every ``.py`` file under ``storage/`` and ``mailbox/`` is parsed, and every import in
it is checked: module level, inside functions, and under ``if TYPE_CHECKING:`` alike.
Relative imports are resolved against the package the folder is mapped to
(``storage/`` is ``actors.storage``, ``mailbox/`` is ``actors.mailbox``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# folder -> (package it is installed as, packages of ``actors`` it may import)
LAYERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "storage": ("actors.storage", ("actors.storage",)),
    "mailbox": ("actors.mailbox", ("actors.mailbox", "actors.storage")),
}


def package_of(path: Path, folder: str) -> str:
    """The dotted package a module file belongs to (its own name for ``__init__``)."""
    base = LAYERS[folder][0]
    relative = path.relative_to(REPO / folder).parent.parts
    return ".".join((base, *relative))


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in ``source``.

    ``from X import name`` yields ``X.name`` as well as ``X``: the name may be a submodule
    (``from actors import mailbox``), and ``X`` itself is imported either way.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    found.append((node.lineno, "." * node.level + (node.module or "")))
                    continue
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def violations(source: str, package: str, allowed: tuple[str, ...]) -> list[str]:
    bad = []
    for line, module in imported_modules(source, package):
        if module.startswith("."):
            bad.append(f"line {line}: relative import {module} leaves the actors package")
            continue
        if module != "actors" and not module.startswith("actors."):
            continue  # the standard library or a third-party package
        if not any(module == ok or module.startswith(ok + ".") for ok in allowed):
            bad.append(f"line {line}: imports {module}")
    return bad


def layer_files() -> list[tuple[str, Path]]:
    return [(folder, path) for folder in LAYERS for path in sorted((REPO / folder).rglob("*.py"))]


@pytest.mark.parametrize(
    ("folder", "path"),
    [pytest.param(f, p, id=str(p.relative_to(REPO))) for f, p in layer_files()],
)
def test_layer_imports_only_downwards(folder: str, path: Path) -> None:
    package = package_of(path, folder)
    allowed = LAYERS[folder][1]
    assert violations(path.read_text(), package, allowed) == []


def test_every_layer_has_files() -> None:
    # A moved or renamed folder must not turn the check above into a no-op.
    for folder in LAYERS:
        assert (REPO / folder / "__init__.py").is_file(), folder
    assert {f for f, _ in layer_files()} == set(LAYERS)


# --- the checker itself ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "package", "expected"),
    [
        ("import actors", "actors.storage", ["line 1: imports actors"]),
        ("import actors.mailbox", "actors.storage", ["line 1: imports actors.mailbox"]),
        (
            "from actors import mailbox",
            "actors.storage",
            ["line 1: imports actors", "line 1: imports actors.mailbox"],
        ),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from actors import Foo\n",
            "actors.storage",
            ["line 3: imports actors", "line 3: imports actors.Foo"],
        ),
        (
            "from .. import _errors",
            "actors.storage",
            ["line 1: imports actors", "line 1: imports actors._errors"],
        ),
        (
            "from ..mailbox import x",
            "actors.storage",
            ["line 1: imports actors.mailbox", "line 1: imports actors.mailbox.x"],
        ),
        (
            "from ... import x",
            "actors.storage",
            ["line 1: relative import ... leaves the actors package"],
        ),
        (
            "def f():\n    import actors._runtime\n",
            "actors.mailbox",
            ["line 2: imports actors._runtime"],
        ),
        ("importlib.import_module('actors')", "actors.mailbox", ["line 1: imports actors"]),
        ("from ._state import x\nfrom . import _driver", "actors.mailbox", []),
        ("from ..storage import Store", "actors.mailbox", []),
        ("from actors.storage import Store\nimport trio", "actors.mailbox", []),
        ("from . import _keys\nimport mailbox", "actors.storage", []),
    ],
)
def test_checker_finds_upward_imports(source: str, package: str, expected: list[str]) -> None:
    folder = package.rsplit(".", 1)[1]
    assert violations(source, package, LAYERS[folder][1]) == expected


# --- pure cores inside ``actors`` ----------------------------------------------------------

#: Modules of ``actors`` that are pure state machines: the standard library only (and
#: each other), none of its I/O, so they are tested without an event loop (DESIGN.md
#: section 5).
PURE = ("actors/_lifecycle.py", "actors/_lifecycle_names.py")
IMPURE_STDLIB = {"asyncio", "selectors", "socket", "threading", "time"}


@pytest.mark.parametrize("relative", PURE)
def test_pure_cores_import_only_the_standard_library(relative: str) -> None:
    path = REPO / relative
    modules = [module for _, module in imported_modules(path.read_text(), "actors")]
    assert modules, f"{relative} imports nothing: is the parser still finding imports?"
    pure = {"actors." + Path(other).stem for other in PURE}
    for module in modules:
        if module in pure or module.rsplit(".", 1)[0] in pure:  # (and its names)
            continue
        top = module.split(".")[0]
        assert top in sys.stdlib_module_names, f"{relative} imports {module}"
        assert top not in IMPURE_STDLIB, f"{relative} imports {module}"


# --- no import cycle, no oversized module (DESIGN.md section 5) --------------------------

#: The package folders and the dotted package each is installed as.
PACKAGES: dict[str, str] = {
    "actors": "actors",
    "actors/endpoint": "actors.endpoint",
    "actors/restate": "actors.restate",
    "mailbox": "actors.mailbox",
    "storage": "actors.storage",
}
MAX_LINES = 600


def module_files() -> dict[str, Path]:
    """Every module of the installed package, by dotted name."""
    modules: dict[str, Path] = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = path
    return modules


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports (TYPE_CHECKING and local imports too).
    ``from X import name`` counts ``X.name`` when that is a module, else ``X``."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
        edges = set()
        for _line, target in imported_modules(path.read_text(), package):
            if target in modules and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a list of modules, first == last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for succ in sorted(graph[node]):
            if state.get(succ) == 1:
                return [*stack[stack.index(succ) :], succ]
            if succ not in state:
                found = visit(succ)
                if found is not None:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found is not None:
                return found
    return None


def package_graph() -> dict[str, set[str]]:
    graph = import_graph(module_files())
    # A package's __init__ re-exports its modules: importing a package is not a cycle
    # with the modules it consists of, so leave the __init__ -> own module edges out.
    for package in PACKAGES.values():
        graph[package] = {m for m in graph[package] if not m.startswith(package + ".")}
    return graph


def test_restate_layer_sits_on_the_public_api() -> None:
    # actors.restate is a layer above actors: it imports the public ``actors`` package
    # (and the standard library, third-party packages, its own modules), never a
    # private module of actors; actors never imports it, except the CLI's
    # ``serve --restate``, which calls ``install()`` before importing the user's module.
    graph = import_graph(module_files())
    for name, targets in graph.items():
        if name.startswith("actors.restate"):
            private = [
                t for t in targets if t.startswith("actors.") and not t.startswith("actors.restate")
            ]
            assert private == [], f"{name} imports private modules of actors: {private}"
        else:
            upward = [t for t in targets if t.startswith("actors.restate")]
            assert upward == [] or name == "actors._cli", f"{name} imports {upward}"
    assert any(t.startswith("actors.restate") for t in graph["actors._cli"]), "the check is blind"


def test_no_import_cycle_in_the_package() -> None:
    cycle = find_cycle(package_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    "path", [pytest.param(p, id=str(p.relative_to(REPO))) for p in module_files().values()]
)
def test_no_module_over_600_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines: split it by concern"


def test_cycle_finder_finds_cycles_through_type_checking_imports() -> None:
    sources = {
        "a": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from actors.b import B\n",
        "b": "from actors.c import C\n",
        "c": "def f():\n    from actors import a\n",
    }
    graph = {
        f"actors.{n}": {
            t
            for _l, t in imported_modules(s, "actors")
            if t in {"actors.a", "actors.b", "actors.c"}
        }
        for n, s in sources.items()
    }
    assert find_cycle(graph) == ["actors.a", "actors.b", "actors.c", "actors.a"]
    graph["actors.c"] = set()
    assert find_cycle(graph) is None


def test_importing_actors_imports_no_test_tooling() -> None:
    # ``trio.testing`` imports pytest when it is installed: a runtime that imported it
    # carried pytest and pygments (~12,000 objects, ~120 ms of import) into every
    # process that uses it.
    code = (
        "import sys, actors, actors.storage, actors.mailbox\n"
        "print(sorted(m for m in ('pytest', '_pytest', 'pygments', 'trio.testing')"
        " if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert done.stdout.strip() == "[]", done.stdout
