"""A saga drawn: its steps in order with their compensations, as a Mermaid flowchart (as
GitHub renders it) or SVG; with an instance, where it stands highlighted."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from catgad.diagrams.mermaid import highlight, label
from catgad.diagrams.svg import digraph, look, render
from catgad.model import Config
from catgad.reactors.durations import format_duration
from catgad.sagas.model import SagaDef


def saga_diagram(
    saga: SagaDef,
    emits: Mapping[str, list[str] | None],
    *,
    current: str | None = None,
    visited: Iterable[str] = (),
    failed: str | None = None,
) -> str:
    """Steps left to right as they run; each compensating command below, linked from the
    events it undoes (dashed), in the order compensation would run them."""
    lines = ["flowchart LR"]
    if saga.description:
        lines.append(f"    %% {saga.description}")
    start = saga.start_event or f"POST /sagas/{saga.name}"
    lines.append(f'    start(["{label(start)}"])')
    previous = "start"
    for step in saga.steps:
        text = f"{step.name}<br/>{step.command}"
        if step.awaits is not None:
            text += f"<br/>awaits {' or '.join(step.awaits.success)}"
            if step.awaits.timeout is not None:
                text += f" within {format_duration(step.awaits.timeout)}"
        lines.append(f'    {step.name}["{label(text).replace("#60;br/#62;", "<br/>")}"]')
        lines.append(f"    {previous} --> {step.name}")
        previous = step.name
    lines.append('    done(["completed"])')
    lines.append(f"    {previous} --> done")
    produced = producers(saga, emits)
    for index, (event, comp) in enumerate(saga.compensate.items()):
        node = f"undo{index}"
        lines.append(f'    {node}[/"{label(comp.command)}"/]')
        for producer in produced.get(event, []):
            lines.append(f"    {producer} -. {label('undo ' + event)} .-> {node}")
    if saga.timeout is not None:
        lines.append(f"    %% the whole saga: {format_duration(saga.timeout)}")
    lines += highlight(current, visited, failed)
    return "\n".join(lines) + "\n"


def emits(config: Config) -> dict[str, list[str] | None]:
    """Command -> the event types it emits (None: a handler decides)."""
    return {
        name: None if command.handler else [emit.event for emit in command.emit]
        for name, command in config.commands.items()
    }


def producers(saga: SagaDef, emits: Mapping[str, list[str] | None]) -> dict[str, list[str]]:
    """Event type -> the steps that produce it: a rule command's emits, an awaited success;
    a handler's command (its events not declared) for what no other step produces."""
    out: dict[str, list[str]] = {}
    for event in saga.compensate:
        known = [
            s.name
            for s in saga.steps
            if event in (emits.get(s.command) or [])
            or (s.awaits is not None and event in s.awaits.success)
        ]
        handled = [s.name for s in saga.steps if emits.get(s.command) is None]
        out[event] = known or handled
    return out


def saga_svg(
    saga: SagaDef,
    emits: Mapping[str, list[str] | None],
    *,
    current: str | None = None,
    visited: Iterable[str] = (),
    failed: str | None = None,
) -> str:
    seen = set(visited)
    graph = digraph(saga.name)
    graph.node("start", saga.start_event or f"POST /sagas/{saga.name}", shape="oval")
    previous = "start"
    for step in saga.steps:
        text = f"{step.name}\n{step.command}"
        if step.awaits is not None:
            text += f"\nawaits {' or '.join(step.awaits.success)}"
            if step.awaits.timeout is not None:
                text += f" within {format_duration(step.awaits.timeout)}"
        graph.node(step.name, text, **look(step.name, current, seen, failed))
        graph.edge(previous, step.name)
        previous = step.name
    graph.node("done", "completed", shape="oval", **look("done", current, seen, failed))
    graph.edge(previous, "done")
    made = producers(saga, emits)
    for index, (event, comp) in enumerate(saga.compensate.items()):
        node = f"undo{index}"
        graph.node(node, comp.command, shape="parallelogram")
        for producer in made.get(event, []):
            graph.edge(producer, node, label=f"undo {event}", style="dashed")
    return render(graph)
