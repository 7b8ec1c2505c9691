"""SVG pictures of processes and sagas, laid out on the server by Graphviz (`dot`): no
browser, nothing fetched. The same content as the Mermaid text (catgad.diagrams.mermaid):
states, transitions with event and guard, timers, approvals, commands, ends; a saga's steps
and compensations; an instance's place highlighted and its way there marked."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping

import graphviz

from catgad.diagrams.mermaid import producers
from catgad.errors import NoGraphviz
from catgad.processes.model import ProcessDef
from catgad.reactors.durations import format_duration
from catgad.sagas.model import SagaDef

CURRENT = {
    "style": "rounded,filled,bold",
    "fillcolor": "#ffe08a",
    "color": "#b8860b",
    "penwidth": "3",
}
VISITED = {"style": "rounded,filled", "fillcolor": "#e3f2e1", "color": "#5b8c5a"}
FAILED = {"style": "rounded,filled", "fillcolor": "#f8d7da", "color": "#a94442"}
_FONT = {"fontname": "Helvetica", "fontsize": "11"}


def _render(graph: graphviz.Digraph) -> str:
    if shutil.which("dot") is None:
        raise NoGraphviz(
            "drawing SVG needs Graphviz's `dot` on PATH (Debian: apt install graphviz); "
            "?format=mermaid needs nothing"
        )
    svg: bytes = graph.pipe(format="svg")
    return svg.decode()


def _look(name: str, current: str | None, visited: set[str], failed: str | None) -> dict[str, str]:
    if name == current:
        return CURRENT
    if name == failed:
        return FAILED
    return VISITED if name in visited else {}


def process_svg(
    process: ProcessDef, *, current: str | None = None, visited: Iterable[str] = ()
) -> str:
    seen = set(visited)
    graph = graphviz.Digraph(
        process.name,
        graph_attr={"rankdir": "LR", **_FONT},
        node_attr={"shape": "box", "style": "rounded", **_FONT},
        edge_attr=_FONT,
    )
    graph.node("__start", "", shape="circle", width="0.2", style="filled", fillcolor="black")
    graph.edge("__start", process.initial, label=" or ".join(process.start))
    for name, state in process.states.items():
        lines = [name]
        lines += [f"sends {send.command}" for send in state.send]
        if state.approval is not None:
            lines.append(f"waits for approval ({state.approval.scope})")
        look = _look(name, current, seen, None)
        shape = "doubleoctagon" if state.final else "box"
        graph.node(name, "\n".join(lines), shape=shape, **look)
        for transition in state.on:
            text = transition.event
            if transition.when is not None:
                text += f"\n[{transition.when.source}]"
            graph.edge(name, transition.goto, label=text)
        if state.after is not None:
            graph.edge(
                name,
                state.after.goto,
                label=f"after {format_duration(state.after.seconds)}",
                style="dashed",
            )
        if state.approval is not None:
            graph.edge(name, state.approval.approve, label="approved", color="#2e7d32")
            graph.edge(name, state.approval.reject, label="rejected", color="#c62828")
    return _render(graph)


def saga_svg(
    saga: SagaDef,
    emits: Mapping[str, list[str] | None],
    *,
    current: str | None = None,
    visited: Iterable[str] = (),
    failed: str | None = None,
) -> str:
    seen = set(visited)
    graph = graphviz.Digraph(
        saga.name,
        graph_attr={"rankdir": "LR", **_FONT},
        node_attr={"shape": "box", "style": "rounded", **_FONT},
        edge_attr=_FONT,
    )
    graph.node("start", saga.start_event or f"POST /sagas/{saga.name}", shape="oval")
    previous = "start"
    for step in saga.steps:
        text = f"{step.name}\n{step.command}"
        if step.awaits is not None:
            text += f"\nawaits {' or '.join(step.awaits.success)}"
            if step.awaits.timeout is not None:
                text += f" within {format_duration(step.awaits.timeout)}"
        graph.node(step.name, text, **_look(step.name, current, seen, failed))
        graph.edge(previous, step.name)
        previous = step.name
    graph.node("done", "completed", shape="oval", **_look("done", current, seen, failed))
    graph.edge(previous, "done")
    made = producers(saga, emits)
    for index, (event, comp) in enumerate(saga.compensate.items()):
        node = f"undo{index}"
        graph.node(node, comp.command, shape="parallelogram")
        for producer in made.get(event, []):
            graph.edge(producer, node, label=f"undo {event}", style="dashed")
    return _render(graph)
