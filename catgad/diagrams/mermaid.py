"""Mermaid text of a process (a `stateDiagram-v2`) and of a saga (a `flowchart`), as GitHub
renders them: every state, transition (event and guard), timer (its duration), approval (its
scope), command sent and final state; a saga's steps in order with their compensations.
With an instance, where it stands is highlighted and the way it came marked."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from catgad.config.model import Config
from catgad.processes.model import ProcessDef
from catgad.reactors.durations import format_duration
from catgad.sagas.model import SagaDef

_UNSAFE = re.compile(r'[";#<>{}|`]')  # what would end or confuse a label: written as entities
CURRENT = "fill:#ffe08a,stroke:#b8860b,stroke-width:3px"
VISITED = "fill:#e3f2e1,stroke:#5b8c5a"
FAILED = "fill:#f8d7da,stroke:#a94442"


def label(text: str) -> str:
    """Text safe inside a Mermaid label: quotes, semicolons, #, <, >, braces, pipes and
    backticks as `#NN;` entities, line breaks as spaces."""
    flat = " ".join(text.split())
    return _UNSAFE.sub(lambda m: f"#{ord(m.group(0))};", flat)


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
    lines += _highlight(current, visited)
    return "\n".join(lines) + "\n"


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
    lines += _highlight(current, visited, failed)
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


def _highlight(current: str | None, visited: Iterable[str], failed: str | None = None) -> list[str]:
    lines: list[str] = []
    seen = [v for v in dict.fromkeys(visited) if v != current and v != failed]
    if seen:
        lines.append(f"    classDef visited {VISITED}")
        lines.append(f"    class {','.join(seen)} visited")
    if current is not None:
        lines.append(f"    classDef current {CURRENT}")
        lines.append(f"    class {current} current")
    if failed is not None:
        lines.append(f"    classDef failed {FAILED}")
        lines.append(f"    class {failed} failed")
    return lines
