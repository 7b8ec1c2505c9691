"""Semantic checks of `processes:` (beyond the JSON Schema), each at its file:line:column, all
reported at once:

- `initial` and every `goto` (transitions, timers, approvals) name a state;
- every event and command named exists; commands' data fit their schemas;
- every state is reachable from `initial`, and can reach a final state;
- a non-final state has a way out (a transition, an approval or a timer), a final one none;
- CEL reads only what exists: `data.<f>` of the event at hand (the transition's, or the
  start events'), `process.data.<f>` set at start or by some transition, `process.id`,
  `process.state`, and the envelope's attributes through `event`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from catgad.config.cel import CelExpr
from catgad.config.loader import Path, Reporter, did_you_mean
from catgad.reactors.lint import fields_of, fits_command, listing, unknown_variables

Resolves = Callable[[Path, str, str, str], bool]
Schema = Callable[[str, str], dict[str, Any] | None]

VARIABLES = ("process", "data", "event")
START_VARIABLES = ("data", "event", "process")  # `process.id` only, at start
PROCESS_FIELDS = ("id", "state", "data")


def lint_processes(
    data: Mapping[str, Any],
    exprs: Mapping[Path, CelExpr],
    reporter: Reporter,
    resolves: Resolves,
    schema_of: Schema,
) -> None:
    section = data.get("processes")
    if not isinstance(section, dict):
        return
    for name, raw in section.items():
        if isinstance(raw, dict):
            _Process(name, raw, exprs, reporter, resolves, schema_of).run()


class _Process:
    def __init__(
        self,
        name: str,
        raw: dict[str, Any],
        exprs: Mapping[Path, CelExpr],
        reporter: Reporter,
        resolves: Resolves,
        schema_of: Schema,
    ) -> None:
        self.name = name
        self.raw = raw
        self.exprs = exprs
        self.error = reporter.error
        self.resolves = resolves
        self.schema_of = schema_of
        self.base: Path = ("processes", name)
        self.states: dict[str, dict[str, Any]] = {
            k: (v if isinstance(v, dict) else {}) for k, v in (raw.get("states") or {}).items()
        }
        start = raw.get("start")
        self.start = [start] if isinstance(start, str) else list(start or [])
        self.data_fields = set(raw.get("data") or {})
        for state in self.states.values():
            for item in state.get("on") or []:
                self.data_fields.update(item.get("set") or {})

    def run(self) -> None:
        for index, event in enumerate(self.start):
            where: Path = (
                (*self.base, "start")
                if len(self.start) == 1 and isinstance(self.raw.get("start"), str)
                else (*self.base, "start", index)
            )
            self.resolves(where, "events", event, "event")
        start_fields = self._union(self.start)
        self._cel((*self.base, "id"), ("data", "event"), start_fields)
        for field in self.raw.get("data") or {}:
            self._cel((*self.base, "data", field), START_VARIABLES, start_fields)
        initial = self.raw.get("initial")
        if initial not in self.states:
            self._unknown_state((*self.base, "initial"), str(initial))
        for name, state in self.states.items():
            self._state(name, state)
        if initial in self.states:
            self._graph(str(initial))

    def _state(self, name: str, state: dict[str, Any]) -> None:
        path: Path = (*self.base, "states", name)
        for index, item in enumerate(state.get("on") or []):
            where: Path = (*path, "on", index)
            event = item["event"]
            fields = None
            if self.resolves((*where, "event"), "events", event, "event"):
                fields = fields_of(self.schema_of("events", event))
            self._goto((*where, "goto"), item["goto"])
            self._cel((*where, "if"), VARIABLES, fields)
            for field in item.get("set") or {}:
                self._cel((*where, "set", field), VARIABLES, fields)
        for index, item in enumerate(state.get("send") or []):
            where = (*path, "send", index)
            command = item["command"]
            data = item.get("data") or {}
            if self.resolves((*where, "command"), "commands", command, "command"):
                schema = self.schema_of("commands", command) or {}
                fits_command(self.error, schema, where, item, command, data)
            for field in data:
                self._cel((*where, "data", field), VARIABLES, None)
        after = state.get("after")
        if isinstance(after, dict):
            self._goto((*path, "after", "goto"), after["goto"])
        approval = state.get("approval")
        if isinstance(approval, dict):
            self._goto((*path, "approval", "approve"), approval["approve"])
            self._goto((*path, "approval", "reject"), approval["reject"])
        ways_out = bool(state.get("on")) or bool(after) or bool(approval)
        if state.get("final") and ways_out:
            self.error(
                path,
                f"final state {name!r} has a way out (on, after or approval): "
                "an instance ends in a final state",
                at=path,
            )
        elif not state.get("final") and not ways_out:
            self.error(
                path,
                f"state {name!r} has no way out: give it `on`, `after` or "
                "`approval`, or make it `final: true`",
                at=path,
            )

    def _graph(self, initial: str) -> None:
        edges = {name: self._targets(state) for name, state in self.states.items()}
        reached = _closure({initial}, edges)
        for name in self.states:
            if name not in reached:
                path: Path = (*self.base, "states", name)
                self.error(path, f"state {name!r} cannot be reached from {initial!r}", at=path)
        finals = {name for name, state in self.states.items() if state.get("final")}
        backwards: dict[str, set[str]] = {name: set() for name in self.states}
        for name, targets in edges.items():
            for target in targets:
                backwards.setdefault(target, set()).add(name)
        ending = _closure(finals, backwards)
        for name in reached:
            if name not in ending and name in self.states:
                path = (*self.base, "states", name)
                self.error(
                    path,
                    f"no final state can be reached from {name!r}: an instance "
                    "there would never end",
                    at=path,
                )

    def _targets(self, state: dict[str, Any]) -> set[str]:
        out = {item["goto"] for item in state.get("on") or []}
        if isinstance(state.get("after"), dict):
            out.add(state["after"]["goto"])
        if isinstance(state.get("approval"), dict):
            out |= {state["approval"]["approve"], state["approval"]["reject"]}
        return {t for t in out if t in self.states}

    def _goto(self, path: Path, target: str) -> None:
        if target not in self.states:
            self._unknown_state(path, target)

    def _unknown_state(self, path: Path, target: str) -> None:
        hint = did_you_mean(target, self.states) or listing("states", self.states)
        self.error(path, f"unknown state {target!r}{hint}")

    def _union(self, events: list[str]) -> set[str] | None:
        """The fields every one of `events` declares, joined; None if one does not list them."""
        out: set[str] = set()
        for event in events:
            fields = fields_of(self.schema_of("events", event))
            if fields is None:
                return None
            out |= fields
        return out

    def _cel(self, path: Path, variables: tuple[str, ...], data: set[str] | None) -> None:
        expr = self.exprs.get(path)
        if expr is None:
            return
        unknown_variables(self.error, path, expr, variables)
        for ref in sorted(expr.fields, key=str):
            if not ref.path:
                continue
            first = ref.path[0]
            if ref.root == "data" and data is not None and first not in data:
                hint = did_you_mean(first, data) or listing("the event has", data)
                self.error(path, f"unknown field {first!r}{hint}")
            elif ref.root == "process" and first not in PROCESS_FIELDS:
                hint = did_you_mean(first, PROCESS_FIELDS) or listing("process has", PROCESS_FIELDS)
                self.error(path, f"unknown process field {first!r}{hint}")
            elif (
                ref.root == "process"
                and first == "data"
                and len(ref.path) > 1
                and ref.path[1] not in self.data_fields
            ):
                name = ref.path[1]
                hint = did_you_mean(name, self.data_fields) or listing(
                    "data set at start or by a transition", self.data_fields
                )
                self.error(path, f"unknown instance data field {name!r}{hint}")


def _closure(start: set[str], edges: Mapping[str, set[str]]) -> set[str]:
    seen = set(start)
    todo = list(start)
    while todo:
        for nxt in edges.get(todo.pop(), set()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen
