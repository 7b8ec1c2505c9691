"""Scenario tests: given events, when a command, then events, a rejection or a state.

Each scenario runs the daemon's own CommandEngine on a fresh in-memory store,
so a YAML-only service is tested by the very code that will serve it. Plugin
handlers run for real; a webhook is not called: a scenario of a webhook command
gives the handler's reply (`when.reply`), or is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from catgad.config.model import Config, Scenario
from catgad.engine.commands import CommandEngine
from catgad.envelope import Envelope
from catgad.errors import CatgadError
from catgad.evolution.upcast import Upcasters
from catgad.handlers.plugin import PluginHandler
from catgad.handlers.protocol import Handler
from catgad.handlers.registry import StubHandler, load_plugins
from catgad.store.memory import MemoryStore


@dataclass(slots=True)
class Outcome:
    scenario: Scenario
    passed: bool
    problems: list[str]
    skipped: str | None = None  # why the scenario did not run (TAP SKIP directive)


async def run_scenario(
    config: Config, scenario: Scenario, plugins: Mapping[str, Callable[..., Any]] | None = None
) -> Outcome:
    plugins = load_plugins(config) if plugins is None else plugins
    handlers: dict[str, Handler] = {}
    name = config.commands[scenario.command].handler
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
        return await _run(config, engine, scenario)
    finally:
        await store.close()


async def _run(config: Config, engine: CommandEngine, scenario: Scenario) -> Outcome:
    problems: list[str] = []
    cmd = engine.command_def(scenario.command)
    aggregate = config.aggregates[cmd.aggregate]
    instance = scenario.data.get(aggregate.id_field)
    stream = aggregate.stream_id(str(instance))
    if scenario.given:
        given = [
            Envelope(
                type=g.type,
                data=g.data,
                source="catgad-test",
                dataschemaversion=g.version or _version(config, g.type),
            )
            for g in scenario.given
        ]
        await engine.store.append(stream, given, expected_version=0, command_id="given")
    try:
        result = await engine.execute(scenario.command, scenario.data)
    except CatgadError as exc:
        want = scenario.expect_rejection
        if want is None:
            problems.append(f"rejected with {exc.status} {exc.slug}: {exc.detail}")
        else:
            if want.status is not None and want.status != exc.status:
                problems.append(f"expected status {want.status}, got {exc.status}: {exc.detail}")
            if want.message is not None and want.message not in exc.detail:
                problems.append(f"expected message containing {want.message!r}, got {exc.detail!r}")
        return Outcome(scenario, not problems, problems)
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
    return Outcome(scenario, not problems, problems)


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
