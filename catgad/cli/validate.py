"""`catgad validate CONFIG`: load and check a config without running it.

Exit 0 with a one-line summary when it is valid; otherwise catgad.cli.main
prints every issue as `file:line:col: path: what` and exits 1.
"""

from __future__ import annotations

import argparse

from catgad.app.load import load_config
from catgad.handlers.registry import load_plugins
from catgad.testing.section import TESTS


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check a config file and report every problem",
        description="Load CONFIG and its includes, check it against the JSON Schema and the "
        "semantic rules (names resolve, CEL compiles and reads known fields, plugins import "
        "with the right signature), and report "
        "every problem as file:line:col: path: message. Exit 0 when valid, 1 when not.",
    )
    parser.add_argument("config", metavar="CONFIG", help="the service's YAML file")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)  # a ConfigError reaches main, which prints its issues
    load_plugins(config)  # plugins imported and their signatures checked: ConfigError too
    print(
        f"OK: {args.config}: {len(config.aggregates)} aggregates, "
        f"{len(config.commands)} commands, {len(config.events)} events, "
        f"{len(TESTS.of(config))} tests"
    )
    return 0
