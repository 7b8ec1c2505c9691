"""Scenario tests: given events, when a command, then events, a rejection, a state, rows.

Each scenario runs the daemon's own CommandEngine on a fresh in-memory store,
so a YAML-only service is tested by the very code that will serve it. Plugin
handlers run for real; a webhook is not called: a scenario of a webhook command
gives the handler's reply (`when.reply`), or is skipped.

Expected read-model rows (`then.rows`) are checked after the events (given,
then the command's) went through the projection's own mapping and consumer
(catgad.projections.consume, as the daemon runs them) into a scratch SQLite
table in a temporary directory, whatever the projection's target: the mapping
judges every value before a target sees it (catgad.projections.mapping), so
SQLite, PostgreSQL and Redis hold the same rows for the same events, and a
scenario needs no server.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from catgad.engine.commands import CommandEngine
from catgad.envelope import Envelope
from catgad.errors import CatgadError, TargetError
from catgad.evolution.upcast import Upcasters
from catgad.handlers.plugin import PluginHandler
from catgad.handlers.protocol import Handler
from catgad.handlers.registry import StubHandler, load_plugins
from catgad.model import Config
from catgad.projections.consume import Consumer
from catgad.projections.mapping import MappingError
from catgad.projections.model import KEY_COLUMN, ProjectionDef
from catgad.projections.section import PROJECTIONS
from catgad.projections.targets.protocol import Row
from catgad.projections.targets.sqlite import SQLiteDatabase, SQLiteTarget
from catgad.store.memory import MemoryStore
from catgad.store.protocol import EventStore
from catgad.testing.model import ExpectedRow, GivenEvent, Scenario

SOURCE = "catgad-test"
_ALL = 1_000_000  # events read at once: a scenario has a handful


class Named(Protocol):
    """What a report needs of a scenario (a command's, or a saga's)."""

    name: str
    where: Any


@dataclass(slots=True)
class Outcome:
    scenario: Named
    passed: bool
    problems: list[str]
    skipped: str | None = None  # why the scenario did not run (TAP SKIP directive)


async def run_scenario(
    config: Config, scenario: Scenario, plugins: Mapping[str, Callable[..., Any]] | None = None
) -> Outcome:
    plugins = load_plugins(config) if plugins is None else plugins
    handlers: dict[str, Handler] = {}
    command = config.commands[scenario.command] if scenario.command is not None else None
    name = command.handler if command is not None else None
    if name is not None:
        if scenario.reply is not None:
            handlers[name] = StubHandler(name, scenario.reply, config.events)
        elif config.handlers[name].kind == "webhook":
            return Outcome(scenario, True, [], f"needs webhook {name!r} (or give when.reply)")
        else:
            handlers[name] = PluginHandler.from_config(
                config.handlers[name], plugins[name], config.events
            )
    store = MemoryStore()
    await store.open()
    try:
        upcasting = Upcasters(config, plugins).wrap(store)
        engine = CommandEngine(config, upcasting, handlers=handlers)
        problems = await _given(config, engine, scenario)
        if scenario.command is not None:
            problems += await _run(config, engine, scenario, scenario.command)
        if scenario.expect_rows:
            problems += await check_rows(config, upcasting, scenario.expect_rows)
        return Outcome(scenario, not problems, problems)
    finally:
        await store.close()


async def _given(config: Config, engine: CommandEngine, scenario: Scenario) -> list[str]:
    """Store the given events, each run of one stream as one append."""
    default = _command_stream(config, scenario)
    runs: list[tuple[str, list[Envelope]]] = []
    for given in scenario.given:
        stream = given.stream or default or event_stream(config, given)
        event = Envelope(
            type=given.type,
            data=given.data,
            source=SOURCE,
            dataschemaversion=given.version or _version(config, given.type),
        )
        if runs and runs[-1][0] == stream:
            runs[-1][1].append(event)
        else:
            runs.append((stream, [event]))
    for number, (stream, events) in enumerate(runs, 1):
        try:
            await engine.store.append(
                stream, events, expected_version=None, command_id=f"given-{number}"
            )
        except CatgadError as exc:
            return [f"the given events could not be stored in {stream!r}: {exc.detail}"]
    return []


def _command_stream(config: Config, scenario: Scenario) -> str | None:
    if scenario.command is None:
        return None
    aggregate = config.aggregates[config.commands[scenario.command].aggregate]
    return aggregate.stream_id(str(scenario.data.get(aggregate.id_field)))


def event_stream(config: Config, given: GivenEvent) -> str:
    """The stream of the aggregate whose rules name the event and whose id is in its data."""
    for aggregate in config.aggregates.values():
        if given.type in aggregate.on and aggregate.id_field in given.data:
            return aggregate.stream_id(str(given.data[aggregate.id_field]))
    for aggregate in config.aggregates.values():
        if aggregate.id_field in given.data:
            return aggregate.stream_id(str(given.data[aggregate.id_field]))
    return "scenario"


async def _run(
    config: Config, engine: CommandEngine, scenario: Scenario, command: str
) -> list[str]:
    problems: list[str] = []
    cmd = engine.command_def(command)
    aggregate = config.aggregates[cmd.aggregate]
    instance = scenario.data.get(aggregate.id_field)
    try:
        result = await engine.execute(command, scenario.data)
    except CatgadError as exc:
        want = scenario.expect_rejection
        if want is None:
            problems.append(f"rejected with {exc.status} {exc.slug}: {exc.detail}")
        else:
            if want.status is not None and want.status != exc.status:
                problems.append(f"expected status {want.status}, got {exc.status}: {exc.detail}")
            if want.message is not None and want.message not in exc.detail:
                problems.append(f"expected message containing {want.message!r}, got {exc.detail!r}")
        return problems
    if scenario.expect_rejection is not None:
        got = ", ".join(e.type for e in result.events) or "no events"
        problems.append(f"expected a rejection, but the command was accepted ({got})")
    if scenario.expect_events is not None:
        want_events = [(e.type, e.data) for e in scenario.expect_events]
        got_events = [(e.type, e.data) for e in result.events]
        if want_events != got_events:
            problems.append(f"expected events {_show(want_events)}, got {_show(got_events)}")
    if scenario.expect_state is not None:
        _, loaded = await engine.aggregate_state(aggregate.name, str(instance))
        for name, want in scenario.expect_state.items():
            if name not in loaded.state:
                problems.append(f"expected state.{name} = {want!r}, but it is not set")
            elif loaded.state[name] != want:
                problems.append(f"expected state.{name} = {want!r}, got {loaded.state[name]!r}")
    return problems


# -- read models ------------------------------------------------------------------------------


async def check_rows(config: Config, store: EventStore, expected: list[ExpectedRow]) -> list[str]:
    """Project every event of `store` with each named projection, then compare the rows."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="catgad-test-") as scratch:
        databases: list[SQLiteDatabase] = []
        try:
            targets: dict[str, SQLiteTarget] = {}
            for name in dict.fromkeys(e.projection for e in expected):
                # a file each: two projections may name the same table on different targets
                db = SQLiteDatabase(str(Path(scratch) / f"{len(databases)}.db"))
                databases.append(db)
                target = SQLiteTarget(_scratch(PROJECTIONS.of(config)[name]), db)
                await target.open()
                failure = await project(target.projection, store, target)
                if failure is not None:
                    problems.append(failure)
                targets[name] = target
            if problems:  # rows of a projection that stopped half-way would only mislead
                return problems
            for want in expected:
                got = await targets[want.projection].get(want.key)
                problems.extend(compare_row(want, got))
        finally:
            for db in databases:
                await db.close()
    return problems


def _scratch(projection: ProjectionDef) -> ProjectionDef:
    """The projection into a scratch SQLite table; a poison event stops it at once (no
    retries and their backoff), to be reported rather than dead-lettered."""
    target = dataclasses.replace(
        projection.target, kind="sqlite", url=None, schema=None, options={}
    )
    return dataclasses.replace(projection, target=target, retries=0, on_error="stop")


async def _no_sleep(seconds: float) -> bool:
    return False


async def project(projection: ProjectionDef, store: EventStore, target: SQLiteTarget) -> str | None:
    """Apply every event of `store` to `target` as the daemon's consumer does; why it
    stopped on a poison event, or None."""
    consumer = Consumer(projection, store, source=SOURCE, sleep=_no_sleep)
    events = await store.read_all(after=0, limit=_ALL)
    position, start, single = 0, 0, False
    while start < len(events):
        batch = events[start : start + 1] if single else events[start:]
        try:
            outcome = await consumer.write(
                target, batch, position, None if single else consumer.plan(batch)
            )
        except (MappingError, TargetError) as exc:  # not expected from write: say what it was
            return f"projection {projection.name!r}: {exc}"
        if outcome.failed is not None:
            return f"projection {projection.name!r} could not apply {outcome.failed}"
        if outcome.split:  # the target refused the batch: find the event at fault
            single = True
            continue
        if not outcome.applied:  # cannot happen without retries; never loop on it
            return f"projection {projection.name!r} made no progress at position {position}"
        start += outcome.applied
        position = outcome.position
    return None


def compare_row(want: ExpectedRow, got: Row | None) -> list[str]:
    """Each difference between the expected row and the row found, naming the field."""
    where = f"{want.projection}[{want.key!r}]"
    if want.absent:
        return [] if got is None else [f"{where}: expected no row, got {_fields(got)}"]
    if got is None:
        return [f"{where}: expected a row, but there is none"]
    problems = []
    for name, value in want.fields.items():
        if name not in got:
            problems.append(f"{where}.{name}: expected {value!r}, but the row has no {name!r}")
        elif not _same(value, got[name]):
            problems.append(f"{where}.{name}: expected {value!r}, got {got[name]!r}")
    if want.exact:
        for name in got:
            if name not in want.fields and name != KEY_COLUMN:
                problems.append(
                    f"{where}.{name}: got {got[name]!r}, but `row` does not list it "
                    "(list every column, or check some with `fields`)"
                )
    return problems


def _same(want: Any, got: Any) -> bool:
    """Equal as JSON values: true is not 1, 3 is 3.0."""
    if isinstance(want, bool) or isinstance(got, bool):
        return type(want) is type(got) and want == got
    if isinstance(want, dict) and isinstance(got, dict):
        return want.keys() == got.keys() and all(_same(want[k], got[k]) for k in want)
    if isinstance(want, list) and isinstance(got, list):
        return len(want) == len(got) and all(_same(a, b) for a, b in zip(want, got, strict=True))
    return bool(want == got)


def _fields(row: Row) -> str:
    return "{" + ", ".join(f"{k}: {v!r}" for k, v in row.items() if k != KEY_COLUMN) + "}"


def _version(config: Config, event_type: str) -> int:
    event = config.events.get(event_type)
    return event.version if event else 1


def _show(events: list[tuple[str, dict[str, Any]]]) -> str:
    if not events:
        return "none"
    return "; ".join(f"{t} {d}" for t, d in events)


def tap_lines(outcomes: list[Outcome]) -> Iterator[str]:
    """A TAP version 14 report, with a YAML diagnostic block per failure."""
    yield "TAP version 14"
    yield f"1..{len(outcomes)}"
    for number, outcome in enumerate(outcomes, 1):
        status = "ok" if outcome.passed else "not ok"
        skip = f" # SKIP {outcome.skipped}" if outcome.skipped else ""
        yield f"{status} {number} - {outcome.scenario.name}{skip}"
        if not outcome.passed:
            yield "  ---"
            for problem in outcome.problems:
                yield f"  message: {problem!r}"
            where = outcome.scenario.where
            if where is not None:
                yield f"  at: {where.file}:{where.line}:{where.column}"
            yield "  ..."
    skipped = sum(o.skipped is not None for o in outcomes)
    passed = sum(o.passed for o in outcomes) - skipped
    failed = len(outcomes) - passed - skipped
    yield f"# {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "")
