"""The product's import graph: imports only go down the layers, and no modules import each other
in a circle.

Layers, bottom to top: ``scanners``, ``ingest``, ``compliance``, ``archive``, ``qscan``. A module
may import its own layer and the layers below it, never one above. Every ``import`` and
``from ... import`` in the source counts, read with ``ast`` (nothing is imported): at module
level, inside functions and methods, and under ``if TYPE_CHECKING:``.

- Layer check: every import counts, ``TYPE_CHECKING`` ones included (a type named from a
  higher layer is a dependency on it all the same).
- Circle check: an import under ``if TYPE_CHECKING:`` is left out (it never runs, so it cannot
  make a circle when modules load); every other import, including one inside a function, is
  an edge. ``from a.b import c`` is an edge to the module ``a.b.c`` when there is one, else to
  ``a.b``. The parent packages Python runs on the way to a module (``a/__init__`` for
  ``import a.b``) are not edges: each package ``__init__`` is a module of the graph itself,
  its own imports are checked like any other, and counting the implicit parent would call
  every package that gathers its children (``compliance.models``) a circle.

Names outside the five packages (the standard library, third-party packages, ``alembic.*``)
are not checked. There are no exemptions.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("scanners", "ingest", "compliance", "archive", "qscan")  # bottom to top
RANK = {name: i for i, name in enumerate(LAYERS)}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, type_checking: bool = False) -> Iterator[tuple[ast.stmt, bool]]:
    """Every import statement under ``tree``, with whether it sits under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, type_checking
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from _imports(ast.Module(body=[child], type_ignores=[]), True)
            for child in node.orelse:
                yield from _imports(ast.Module(body=[child], type_ignores=[]), type_checking)
        else:
            yield from _imports(node, type_checking)


def _targets(module: str, node: ast.stmt) -> Iterator[tuple[str, int]]:
    """The product modules an import statement reaches, with its line."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, node.lineno
        return
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        package = module.split(".")
        if MODULES[module].name != "__init__.py":
            package = package[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        yield (sub if sub in MODULES else base), node.lineno


def _edges() -> Iterator[tuple[str, str, int, bool]]:
    """(importer, imported, line, under TYPE_CHECKING) for every import of a product module."""
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node, type_checking in _imports(tree):
            for target, line in _targets(module, node):
                if target.split(".")[0] in RANK:
                    yield module, target, line, type_checking


EDGES = list(_edges())


def test_the_walk_sees_the_product() -> None:
    assert {"scanners.mime.parse", "ingest.processor", "compliance.models", "archive.consumer",
            "qscan.cli"} <= MODULES.keys()
    assert any(t == "scanners.mime.parse" for _, t, _, _ in EDGES)


def test_imports_only_go_down_the_layers() -> None:
    upward = sorted({
        f"{MODULES[src].relative_to(ROOT)}:{line}: {src} imports {dst}"
        for src, dst, line, _ in EDGES
        if RANK[dst.split(".")[0]] > RANK[src.split(".")[0]]
    })
    assert upward == [], "imports up the layers " + " < ".join(LAYERS) + ":\n" + "\n".join(upward)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a module importing itself
    (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    found.append(sorted(component))
    return found


def test_no_import_circles() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    where: dict[tuple[str, str], int] = {}
    for src, dst, line, type_checking in EDGES:
        if not type_checking and dst in MODULES:
            graph[src].add(dst)
            where.setdefault((src, dst), line)
    report = []
    for component in _cycles(graph):
        members = set(component)
        links = [f"  {src} -> {dst} (line {where[src, dst]})"
                 for src in component for dst in sorted(graph[src] & members)]
        report.append(" <-> ".join(component) + "\n" + "\n".join(links))
    assert report == [], "import circles:\n" + "\n".join(report)


def test_the_circle_check_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"a"}, "b": set()}) == [["a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
