"""What every SVG diagram shares: laid out on the server by Graphviz (`dot`), no browser,
nothing fetched; an instance's place highlighted and its way there marked."""

from __future__ import annotations

import shutil

import graphviz

from catgad.errors import NoGraphviz

CURRENT = {
    "style": "rounded,filled,bold",
    "fillcolor": "#ffe08a",
    "color": "#b8860b",
    "penwidth": "3",
}
VISITED = {"style": "rounded,filled", "fillcolor": "#e3f2e1", "color": "#5b8c5a"}
FAILED = {"style": "rounded,filled", "fillcolor": "#f8d7da", "color": "#a94442"}
FONT = {"fontname": "Helvetica", "fontsize": "11"}


def render(graph: graphviz.Digraph) -> str:
    if shutil.which("dot") is None:
        raise NoGraphviz(
            "drawing SVG needs Graphviz's `dot` on PATH (Debian: apt install graphviz); "
            "?format=mermaid needs nothing"
        )
    svg: bytes = graph.pipe(format="svg")
    return svg.decode()


def look(name: str, current: str | None, visited: set[str], failed: str | None) -> dict[str, str]:
    if name == current:
        return CURRENT
    if name == failed:
        return FAILED
    return VISITED if name in visited else {}


def digraph(name: str) -> graphviz.Digraph:
    """A left-to-right graph in the diagrams' font, boxes rounded."""
    return graphviz.Digraph(
        name,
        graph_attr={"rankdir": "LR", **FONT},
        node_attr={"shape": "box", "style": "rounded", **FONT},
        edge_attr=FONT,
    )
