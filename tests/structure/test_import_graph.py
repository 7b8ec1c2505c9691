"""The layering points one way: no import cycle between catgad's packages, and the config
core imports nothing of catgad above catgad.errors.

Every import counts, also one inside a function (it is a dependency all the same). A
package is a directory under catgad/; a top-level module (catgad/runtime.py) is a unit of
its own. Draw the graph with `python -m tests.structure.test_import_graph`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "catgad"
Graph = dict[str, dict[str, list[str]]]  # unit -> unit it imports -> files doing so


def _unit(module: str) -> str:
    """`catgad.sagas.runner` -> `sagas`; `catgad.runtime` -> `runtime`; `catgad` -> `catgad`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "catgad"


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "catgad":
                yield from (f"catgad.{alias.name}" for alias in node.names)
            elif node.module.startswith("catgad."):
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("catgad."))


@cache
def graph() -> Graph:
    edges: Graph = {}
    for path in sorted(ROOT.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        source = _unit(module.removesuffix(".__init__"))
        for imported in _imports(path):
            target = _unit(imported)
            if target != source:
                edges.setdefault(source, {}).setdefault(target, []).append(str(path))
    return edges


def cycles(edges: Graph) -> list[list[str]]:
    """The strongly connected components of more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(unit: str) -> None:
        index[unit] = low[unit] = len(index)
        stack.append(unit)
        for target in edges.get(unit, {}):
            if target not in index:
                visit(target)
                low[unit] = min(low[unit], low[target])
            elif target in stack:
                low[unit] = min(low[unit], index[target])
        if low[unit] == index[unit]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == unit:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for unit in sorted(edges):
        if unit not in index:
            visit(unit)
    return found


def test_no_cycle_between_packages() -> None:
    edges = graph()
    found = cycles(edges)
    detail = [
        f"{a} -> {b}: {', '.join(edges[a][b])}"
        for component in found
        for a in component
        for b in edges.get(a, {})
        if b in component
    ]
    assert found == [], "import cycles between packages:\n" + "\n".join(detail)


@pytest.mark.parametrize("core", ["config", "errors", "envelope", "ids"])
def test_the_core_imports_nothing_above_errors(core: str) -> None:
    allowed = {"errors"}
    above = {t: files for t, files in graph().get(core, {}).items() if t not in allowed}
    assert above == {}, f"catgad.{core} imports {sorted(above)}"


def test_the_graph_is_read() -> None:
    """The test would pass on an empty graph: make sure it sees the known edges."""
    edges = graph()
    assert "config" in edges["sagas"] and "model" in edges["runtime"]
    assert "registry" not in edges and "sagas" in edges["app"]


if __name__ == "__main__":
    for unit, targets in sorted(graph().items()):
        print(f"{unit} -> {' '.join(sorted(targets))}")


GENERIC = ["runtime.py", "model.py", "http/app.py", "http/openapi.py", "cli/test.py"]
GENERIC += ["cli/diagram.py", "app/load.py", "app/schema.py", "cli/run.py"]


@pytest.mark.parametrize("path", GENERIC)
def test_the_daemon_finds_reactors_through_the_config(path: str) -> None:
    """A new reactor is its own package plus its line in catgad/app/registry.py: what runs,
    serves, documents, tests and draws reactors imports none of them by name."""
    named = [m for m in _imports(ROOT / path) if _unit(m) in ("sagas", "processes")]
    assert named == []
