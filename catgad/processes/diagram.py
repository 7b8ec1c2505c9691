"""A process drawn: its state machine as Mermaid (`stateDiagram-v2`, as GitHub renders it) or
SVG: every state, transition (event and guard), timer (its duration), approval (its scope),
command sent and final state; with an instance, where it stands highlighted."""

from __future__ import annotations

from collections.abc import Iterable

from catgad.diagrams.mermaid import highlight, label
from catgad.diagrams.svg import digraph, look, render
from catgad.processes.model import ProcessDef
from catgad.reactors.durations import format_duration


def process_diagram(
    process: ProcessDef, *, current: str | None = None, visited: Iterable[str] = ()
) -> str:
    lines = ["stateDiagram-v2"]
    if process.description:
        lines.append(f"    %% {process.description}")
    lines.append(f"    [*] --> {process.initial}: {label(' or '.join(process.start))}")
    for name, state in process.states.items():
        notes: list[str] = []
        for send in state.send:
            notes.append(f"sends {send.command}")
        if state.approval is not None:
            notes.append(f"waits for approval (scope {state.approval.scope})")
        for note in notes:
            lines.append(f"    {name}: {label(note)}")
        for transition in state.on:
            text = transition.event
            if transition.when is not None:
                text += f" [{transition.when.source}]"
            lines.append(f"    {name} --> {transition.goto}: {label(text)}")
        if state.after is not None:
            after = f"after {format_duration(state.after.seconds)}"
            lines.append(f"    {name} --> {state.after.goto}: {label(after)}")
        if state.approval is not None:
            lines.append(f"    {name} --> {state.approval.approve}: approved")
            lines.append(f"    {name} --> {state.approval.reject}: rejected")
        if state.final:
            lines.append(f"    {name} --> [*]")
    lines += highlight(current, visited)
    return "\n".join(lines) + "\n"


def process_svg(
    process: ProcessDef, *, current: str | None = None, visited: Iterable[str] = ()
) -> str:
    seen = set(visited)
    graph = digraph(process.name)
    graph.node("__start", "", shape="circle", width="0.2", style="filled", fillcolor="black")
    graph.edge("__start", process.initial, label=" or ".join(process.start))
    for name, state in process.states.items():
        lines = [name]
        lines += [f"sends {send.command}" for send in state.send]
        if state.approval is not None:
            lines.append(f"waits for approval ({state.approval.scope})")
        style = look(name, current, seen, None)
        shape = "doubleoctagon" if state.final else "box"
        graph.node(name, "\n".join(lines), shape=shape, **style)
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
    return render(graph)
