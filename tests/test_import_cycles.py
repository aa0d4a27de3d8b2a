"""No import cycle inside the package: the layers import downwards only.

Static analysis of every import statement of every module under distill/, wherever it is: the module body,
`if TYPE_CHECKING:` blocks and function bodies alike. A function-level or type-checking import does not run
at import time, but it is still a dependency, and hiding one inside a function is the usual way a cycle
survives. An edge goes to the module an import names: `from distill.eval import metrics` is an edge to
distill.eval.metrics, `from distill.filter import check` one to distill.filter (the package's __init__).
Any strongly connected set of modules fails the test.

`KNOWN_EDGES` lists, by name and with the reason and the fix, the imports that still close a cycle in files
being changed elsewhere; they are left out of the graph. The list only shrinks: an entry whose import no
longer exists fails the test too, so whoever removes the import removes the entry.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "distill"

KNOWN_EDGES: dict[tuple[str, str], str] = {}  # (importer, imported) allowed to close a cycle, with why: none


def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    names = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def all_imports(tree: ast.Module):
    """Every import statement in the file: module level, under TYPE_CHECKING, in functions and classes."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node


def import_graph(modules: dict[str, Path], skip: set[tuple[str, str]] | frozenset = frozenset()
                 ) -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its file; `skip` drops (importer, imported) pairs."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in all_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative import: resolve against this module's package
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            edges |= {t for t in targets if t in modules and t != name and (name, t) not in skip}
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_analysis_sees_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_graph_resolves_submodules_and_packages():
    graph = import_graph(module_names())
    assert "distill.errors" in graph["distill.config"]
    assert "distill.config" in graph["distill"]


def test_graph_sees_type_checking_and_function_level_imports(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                    "    from pkg.high import Thing\n")
    (package / "high.py").write_text("def use():\n    from pkg import low\n    return low\n")
    (package / "side.py").write_text("class A:\n    def f(self):\n        from . import high\n")
    graph = import_graph(module_names(package))
    assert graph["pkg.low"] == {"pkg.high"} and graph["pkg.high"] == {"pkg.low"}
    assert graph["pkg.side"] == {"pkg.high"}
    assert cycles(graph) == [["pkg.high", "pkg.low"]]
    assert cycles(import_graph(module_names(package), skip={("pkg.low", "pkg.high")})) == []


def test_no_import_cycle_inside_the_package():
    found = cycles(import_graph(module_names(), skip=set(KNOWN_EDGES)))
    assert not found, ("import cycles (every import statement, function-level and TYPE_CHECKING ones "
                       "included): " + "; ".join(" <-> ".join(c) for c in found))


def test_every_known_edge_still_exists():
    """An allow-listed import that is gone must leave the list: the list only shrinks."""
    graph = import_graph(module_names())
    gone = [f"{a} -> {b}" for a, b in KNOWN_EDGES if b not in graph.get(a, set())]
    assert not gone, "remove from KNOWN_EDGES (the import is gone): " + ", ".join(gone)
