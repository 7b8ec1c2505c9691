"""`catgad test CONFIG`: run the config's scenario tests, TAP report, exit 1 on failure."""

from __future__ import annotations

import argparse
import asyncio

from catgad.config import load_config
from catgad.handlers.registry import load_plugins
from catgad.processes.scenarios import build_scenarios as build_process_scenarios
from catgad.processes.scenarios import run_process_scenario
from catgad.sagas.scenarios import build_scenarios, run_saga_scenario
from catgad.testing.scenarios import Outcome, run_scenario, tap_lines


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "test",
        help="run the config's scenario tests (no server needed)",
        description="Run the scenario tests of CONFIG (its `tests:` section and included "
        "files): given events, when a command, then events, a rejection or a state. "
        "Prints a TAP report; exits 1 when a scenario fails.",
    )
    parser.add_argument("config", metavar="CONFIG", help="path to the YAML config")
    parser.add_argument(
        "-k", dest="pattern", default=None, help="run only scenarios whose name contains PATTERN"
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    scenarios = [s for s in config.tests if args.pattern is None or args.pattern in s.name]
    saga_scenarios = [
        s
        for saga in config.sagas.values()
        for s in build_scenarios(saga)
        if args.pattern is None or args.pattern in s.name
    ]
    process_scenarios = [
        (process, s)
        for process in config.processes.values()
        for s in build_process_scenarios(process)
        if args.pattern is None or args.pattern in s.name
    ]
    plugins = load_plugins(config)

    async def run_all() -> list[Outcome]:
        outcomes = [await run_scenario(config, s, plugins) for s in scenarios]
        outcomes += [await run_saga_scenario(config, s, plugins) for s in saga_scenarios]
        return outcomes + [run_process_scenario(p, s) for p, s in process_scenarios]

    outcomes = asyncio.run(run_all())
    for line in tap_lines(outcomes):
        print(line)
    if not scenarios and not saga_scenarios and not process_scenarios:
        print("# no scenarios found")
        return 1
    return 0 if all(o.passed for o in outcomes) else 1
