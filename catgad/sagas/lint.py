"""Semantic checks of `sagas:` (beyond the JSON Schema), each at its file:line:column.

- every command and event named exists;
- a step whose command emits events has a compensation for each of them, or
  says `compensate: none` (the last step is exempt: nothing after it can fail);
- a compensation is for an event some step can produce;
- step and compensation data fit their command's schema (required fields given,
  no field a closed schema lacks);
- CEL reads only what exists: `input.<f>` (the start schema's, or the start
  event's fields), `steps.<name>` (a step; in a step's data, an earlier one),
  `event.data.<f>` in a compensation (the undone event's fields), `data.<f>` in
  an await's match.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from catgad.config.cel import CelExpr
from catgad.config.loader import Path, Reporter, did_you_mean
from catgad.reactors.lint import fields_of, fits_command, listing, unknown_variables

STEP_VARIABLES = ("input", "id", "steps")
COMPENSATION_VARIABLES = ("input", "id", "steps", "event")
MATCH_VARIABLES = ("input", "id", "steps", "data", "event")
START_VARIABLES = ("data",)

Resolves = Callable[[Path, str, str, str], bool]
Schema = Callable[[str, str], dict[str, Any] | None]  # (section, name) -> payload schema


def lint_sagas(
    data: Mapping[str, Any],
    exprs: Mapping[Path, CelExpr],
    reporter: Reporter,
    resolves: Resolves,
    schema_of: Schema,
    emits: Callable[[str], list[str] | None],
) -> None:
    """`emits(command)` is the event types a rule command emits (None: a handler decides)."""
    section = data.get("sagas")
    if not isinstance(section, dict):
        return
    for name, raw in section.items():
        if isinstance(raw, dict):
            _Saga(name, raw, exprs, reporter, resolves, schema_of, emits).run()


class _Saga:
    def __init__(
        self,
        name: str,
        raw: dict[str, Any],
        exprs: Mapping[Path, CelExpr],
        reporter: Reporter,
        resolves: Resolves,
        schema_of: Schema,
        emits: Callable[[str], list[str] | None],
    ) -> None:
        self.name = name
        self.raw = raw
        self.exprs = exprs
        self.error = reporter.error
        self.resolves = resolves
        self.schema_of = schema_of
        self.emits = emits
        self.base: Path = ("sagas", name)
        self.steps = [s for s in raw.get("steps") or [] if isinstance(s, dict)]
        self.step_names = {s["name"] for s in self.steps}
        self.input_fields = self._inputfields_of()

    def _inputfields_of(self) -> set[str] | None:
        if isinstance(self.raw.get("schema"), dict):
            return fields_of(self.raw["schema"])
        event = (self.raw.get("start") or {}).get("event")
        return fields_of(self.schema_of("events", event)) if event else None

    def run(self) -> None:
        start = self.raw.get("start") or {}
        if "event" in start:
            self.resolves((*self.base, "start", "event"), "events", start["event"], "event")
        self._cel((*self.base, "start", "id"), START_VARIABLES, data=self.input_fields)
        seen: dict[str, int] = {}
        producible: set[str] = set()
        anything = False  # a handler command may produce any event
        compensate = self.raw.get("compensate") or {}
        last = len(self.steps) - 1
        for index, step in enumerate(self.steps):
            path: Path = (*self.base, "steps", index)
            if step["name"] in seen:
                self.error((*path, "name"), f"duplicate step name {step['name']!r}: "
                           f"steps[{seen[step['name']]}] has it too")  # fmt: skip
            seen.setdefault(step["name"], index)
            produced = self._step(path, step, [s["name"] for s in self.steps[:index]])
            if produced is None:
                anything = True
                produced = []
            producible.update(produced)
            if index != last and step.get("compensate") != "none":
                for event in produced:
                    if event not in compensate:
                        self.error(
                            (*path, "command"),
                            f"step {step['name']!r} can produce {event}, which `compensate` "
                            "does not undo: add `compensate: {" + event + ": {command: ...}}` "
                            "to the saga, or `compensate: none` to the step",
                        )
        for event, comp in compensate.items():
            path = (*self.base, "compensate", event)
            known = self.resolves(path, "events", event, "event")
            if known and not anything and event not in producible:
                self.error(path, f"no step of saga {self.name!r} can produce {event}"
                           + listing("they produce", producible), at=path)  # fmt: skip
            if isinstance(comp, dict):
                self._command_data(path, comp, COMPENSATION_VARIABLES, event if known else None)

    def _step(self, path: Path, step: dict[str, Any], earlier: list[str]) -> list[str] | None:
        """The event types the step can produce that may need undoing (None: any, a handler
        decides, or the command is unknown: already reported, and what it would produce cannot
        be known). An await's failure events are outcomes where nothing was done: left out."""
        known = self._command_data(path, step, STEP_VARIABLES, earlier=earlier)
        produced = self.emits(step["command"]) if known else None
        awaits = step.get("await")
        if not isinstance(awaits, dict):
            return produced
        apath: Path = (*path, "await")
        named: dict[str, list[str]] = {}
        for key in ("success", "failure"):
            value = awaits.get(key)
            types = [value] if isinstance(value, str) else list(value or [])
            for i, event in enumerate(types):
                where: Path = (*apath, key) if isinstance(value, str) else (*apath, key, i)
                if self.resolves(where, "events", event, "event"):
                    named.setdefault(key, []).append(event)
        match_fields: set[str] | None = set()
        for event in [*named.get("success", []), *named.get("failure", [])]:
            fields = fields_of(self.schema_of("events", event))
            match_fields = None if fields is None or match_fields is None else match_fields | fields
        self._cel((*apath, "match"), MATCH_VARIABLES, data=match_fields)
        if produced is None:
            return None
        failures = set(named.get("failure", []))
        return [*(e for e in produced if e not in failures), *named.get("success", [])]

    def _command_data(
        self,
        path: Path,
        raw: dict[str, Any],
        variables: tuple[str, ...],
        undone: str | None = None,
        earlier: list[str] | None = None,
    ) -> bool:
        """`raw` (a step or a compensation) sends its command `data` that fits its schema;
        whether the command exists. `earlier`: the steps a step's `steps.<name>` may read."""
        command = raw["command"]
        data = raw.get("data") or {}
        event_fields = fields_of(self.schema_of("events", undone)) if undone else None
        known = self.resolves((*path, "command"), "commands", command, "command")
        if known:
            self._fits(path, raw, command, data)
        for field in data:
            self._cel((*path, "data", field), variables, event_data=event_fields, earlier=earlier)
        return known

    def _fits(self, path: Path, raw: dict[str, Any], command: str, data: dict[str, Any]) -> None:
        schema = self.schema_of("commands", command) or {}
        fits_command(self.error, schema, path, raw, command, data)

    def _cel(
        self,
        path: Path,
        variables: tuple[str, ...],
        *,
        data: set[str] | None = None,
        event_data: set[str] | None = None,
        earlier: list[str] | None = None,
    ) -> None:
        expr = self.exprs.get(path)
        if expr is None:
            return
        unknown_variables(self.error, path, expr, variables)
        for ref in sorted(expr.fields, key=str):
            if not ref.path:
                continue
            first = ref.path[0]
            if ref.root == "input" and self.input_fields is not None:
                if first not in self.input_fields:
                    hint = did_you_mean(first, self.input_fields) or listing(
                        "the start data has", self.input_fields
                    )
                    self.error(path, f"unknown input field {first!r}{hint}")
            elif ref.root == "steps" and first not in self.step_names:
                hint = did_you_mean(first, self.step_names) or listing("steps", self.step_names)
                self.error(path, f"unknown step {first!r}{hint}")
            elif ref.root == "steps" and earlier is not None and first not in earlier:
                hint = listing("earlier steps", earlier)
                self.error(path, f"steps.{first} is not set yet when this step is sent: "
                           f"a step reads only earlier steps{hint}")  # fmt: skip
            elif (
                ref.root == "data"
                and data is not None
                and first not in data
                and "data" in variables
            ):
                hint = did_you_mean(first, data) or listing("the event has", data)
                self.error(path, f"unknown field {first!r}{hint}")
            elif (
                ref.root == "event"
                and event_data is not None
                and first == "data"
                and len(ref.path) > 1
                and ref.path[1] not in event_data
            ):
                hint = did_you_mean(ref.path[1], event_data) or listing("the event has", event_data)
                self.error(path, f"unknown event field {ref.path[1]!r}{hint}")
