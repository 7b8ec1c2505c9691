"""Entry point of the `catgad` command: parses the verb and turns errors into exit codes."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol

from catgad import __version__
from catgad.cli.bench import SUITES, run_suite
from catgad.errors import CatgadError, ConfigError
from catgad.observability.logs import configure_logging

# verb -> module under catgad.cli; each module has add_parser(subparsers) and run(args) -> int
VERBS = (
    "run",
    "validate",
    "test",
    "send",
    "bench",
    "migrate",
    "rebuild",
    "replay",
    "diagram",
    "schema",
)


class VerbModule(Protocol):
    def add_parser(
        self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]
    ) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="catgad",
        description="CQRS / event-sourcing appliance configured by one YAML file.",
    )
    parser.add_argument("--version", action="version", version=f"catgad {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb in VERBS:
        module: VerbModule = importlib.import_module(f"catgad.cli.{verb}")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if len(given) > 1 and given[0] == "bench" and given[1] in SUITES:
        return run_suite(given[1], given[2:])  # a suite's options are its own: passed unparsed
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on usage errors, 0 on --help
    module: VerbModule = importlib.import_module(f"catgad.cli.{args.verb}")
    # every verb logs one way (JSON lines on stderr when not a terminal); `run` sets its level
    configure_logging("warning")
    try:
        return module.run(args)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"{len(exc.issues)} error(s)", file=sys.stderr)
        return exc.exit_code
    except CatgadError as exc:
        print(f"catgad {args.verb}: {exc.detail}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
