"""`catgad test CONFIG`: run the config's scenario tests, TAP report, exit 1 on failure."""

from __future__ import annotations

import argparse
import asyncio

from catgad.app.load import load_config
from catgad.handlers.registry import load_plugins
from catgad.reactors.feature import reactors_of
from catgad.testing.scenarios import Outcome, run_scenario, tap_lines
from catgad.testing.section import TESTS


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "test",
        help="run the config's scenario tests (no server needed)",
        description="Run the scenario tests of CONFIG (its `tests:` section and included "
        "files, and those of its sagas and processes): given events, when a command, then "
        "events, a rejection or a state. Prints a TAP report; exits 1 when a scenario fails.",
    )
    parser.add_argument("config", metavar="CONFIG", help="path to the YAML config")
    parser.add_argument(
        "-k", dest="pattern", default=None, help="run only scenarios whose name contains PATTERN"
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    pattern: str | None = args.pattern
    scenarios = [s for s in TESTS.of(config) if pattern is None or pattern in s.name]
    plugins = load_plugins(config)
    reactor_runs = [
        run
        for reactor in reactors_of(config)
        for run in reactor.scenarios(config, plugins, pattern)
    ]

    async def run_all() -> list[Outcome]:
        outcomes = [await run_scenario(config, s, plugins) for s in scenarios]
        return outcomes + [await run() for run in reactor_runs]

    outcomes = asyncio.run(run_all())
    for line in tap_lines(outcomes):
        print(line)
    if not outcomes:
        print("# no scenarios found")
        return 1
    return 0 if all(o.passed for o in outcomes) else 1
