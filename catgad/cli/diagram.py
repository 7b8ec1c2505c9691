"""`catgad diagram CONFIG NAME`: a process's state machine or a saga's steps, as Mermaid."""

from __future__ import annotations

import argparse

from catgad.app.load import load_config
from catgad.errors import NotFound
from catgad.model import Config
from catgad.reactors.feature import reactors_of


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "diagram",
        help="draw a process or a saga (Mermaid)",
        description="Print the state machine of process NAME (a Mermaid stateDiagram-v2), or "
        "the steps and compensations of saga NAME (a Mermaid flowchart), as GitHub renders "
        "them in Markdown.",
    )
    parser.add_argument("config", metavar="CONFIG", help="path to the YAML config")
    parser.add_argument("name", metavar="NAME", help="a process or a saga of CONFIG")
    parser.add_argument(
        "--format",
        choices=["mermaid", "svg"],
        default="mermaid",
        help="mermaid (default), or svg (drawn by Graphviz's dot)",
    )


def run(args: argparse.Namespace) -> int:
    print(diagram(load_config(args.config), args.name, args.format), end="")
    return 0


def diagram(config: Config, name: str, form: str = "mermaid") -> str:
    """Reactor definition `name` (a process, a saga, ...) drawn as `form`."""
    known: list[str] = []
    for reactor in reactors_of(config):
        drawn = reactor.diagram(name, form, config)
        if drawn is not None:
            return drawn
        known += list(reactor)
    missing = NotFound("process or saga", name)
    missing.detail += f" (known: {', '.join(sorted(known)) or 'none'})"
    raise missing
