"""The import graph of the project's packages: no cycle, and the layering of
docs/architecture.md ("Import layering").

The graph is read from the source with ``ast``, not by importing: every ``import`` and
``from ... import`` anywhere in a module (inside functions and ``if TYPE_CHECKING``
blocks too; a deferred import still is a dependency) is resolved to the project's
module it names, relative imports included. ``from package import name`` depends on
the submodule ``package.name`` when there is one, else on ``package`` itself (its
``__init__``); the parent packages Python imports on the way are not counted.
"""
from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sdtt_search", "tasks", "distill", "configs")


def project_modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, whether it is a package's ``__init__``)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            modules[".".join(parts)] = (path, is_package)
    return modules


def imported_names(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> tuple[set[str], set[str]]:
    """(names of project modules a module imports, imported project names that name no module).

    ``known``: the project's modules; a name is the project's when its first part is one of
    the project's top-level packages.
    """
    tops = {name.split(".")[0] for name in known}
    package = module if is_package else module.rpartition(".")[0]
    wanted: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            wanted += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            submodules = [f"{source}.{alias.name}" for alias in node.names]
            found = [name for name in submodules if name in known]
            wanted += found
            if len(found) < len(submodules):  # names defined in ``source`` itself
                wanted.append(source)
    edges = {name for name in wanted if name in known and name != module}
    unresolved = {name for name in wanted if name.split(".")[0] in tops and name not in known}
    return edges, unresolved


def import_graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> project modules it imports, module -> project names it imports that resolve to no module)."""
    modules = project_modules(root, packages)
    graph, unresolved = {}, {}
    for name, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name], missing = imported_names(tree, name, is_package, set(modules))
        if missing:
            unresolved[name] = missing
    return graph, unresolved


def third_party_roots(root: Path, package: str) -> dict[str, set[str]]:
    """Module of ``package`` -> top-level names of everything it imports (``torch``, ``json``, ...)."""
    out = {}
    for name, (path, is_package) in project_modules(root, (package,)).items():
        roots = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                roots.add(node.module.split(".")[0])
        out[name] = roots
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a path a -> ... -> a) through each strongly connected component that has one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan; the graph has a few hundred modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_through(min(component), component, graph) for component in components]


def _cycle_through(start: str, component: set[str], graph: dict[str, set[str]]) -> list[str]:
    """The shortest path start -> ... -> start inside a strongly connected component (breadth first)."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    following.append(w)
        frontier = following
    raise AssertionError(f"{start} is in a strongly connected component but on no cycle")


def _importers(graph: dict[str, set[str]], package: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    """Modules of ``package`` -> the modules of ``forbidden`` packages they import (only those that do)."""
    found = {m: sorted(d for d in deps if d.split(".")[0] in forbidden)
             for m, deps in graph.items() if m.split(".")[0] == package}
    return {m: deps for m, deps in found.items() if deps}


def _describe(found: list[list[str]]) -> str:
    return "; ".join(" -> ".join(cycle) for cycle in found)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    edges, unresolved = import_graph(ROOT)
    assert not unresolved, f"imports of the project that name no module (fix them or this test's resolver): {unresolved}"
    return edges


def test_the_graph_covers_the_packages(graph):
    assert {"sdtt_search", "sdtt_search.run", "tasks", "tasks.countdown", "distill.sdtt"} <= set(graph)
    assert "sdtt_search.interface" in graph["sdtt_search.search.engine"]  # a relative import resolved
    assert "sdtt_search.hf" in graph["sdtt_search.loading"]  # imported inside load_model: counted


def test_no_import_cycle(graph):
    found = cycles(graph)
    assert not found, f"import cycles (counting imports inside functions): {_describe(found)}"


def test_tasks_import_nothing_of_sdtt_search_or_distill_and_no_torch(graph):
    wrong = _importers(graph, "tasks", ("sdtt_search", "distill"))
    assert not wrong, f"tasks must stand alone: {wrong}"
    torch_users = sorted(m for m, roots in third_party_roots(ROOT, "tasks").items() if "torch" in roots)
    assert not torch_users, f"tasks must not import torch: {torch_users}"


def test_sdtt_search_imports_nothing_of_distill(graph):
    wrong = _importers(graph, "sdtt_search", ("distill",))
    assert not wrong, f"sdtt_search must not import distill: {wrong}"


# ------------------------------------------------------------------ the checker itself
def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_the_checker_finds_a_cycle_hidden_in_a_function(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from .b import helper\n",
        "pkg/b.py": "def helper():\n    from . import c\n    return c\n",
        "pkg/c.py": "import json\n\ndef late():\n    from pkg.a import helper  # deferred, still a dependency\n",
        "pkg/sub/__init__.py": "from .. import b\n",
        "pkg/d.py": "from pkg.sub import b\n",  # a name of the package, not a submodule: depends on pkg.sub
    })
    edges, unresolved = import_graph(tmp_path, ("pkg",))
    assert not unresolved
    assert edges["pkg.sub"] == {"pkg.b"} and edges["pkg.d"] == {"pkg.sub"}
    found = cycles(edges)
    assert len(found) == 1 and set(found[0]) == {"pkg.a", "pkg.b", "pkg.c"} and found[0][0] == found[0][-1]
    assert "pkg.a -> pkg.b -> pkg.c -> pkg.a" == _describe(found)


def test_the_checker_reports_an_import_that_names_no_module(tmp_path):
    _write(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "import pkg.missing\nfrom pkg import gone\n"})
    edges, unresolved = import_graph(tmp_path, ("pkg",))
    assert unresolved == {"pkg.a": {"pkg.missing"}} and edges["pkg.a"] == {"pkg"}
