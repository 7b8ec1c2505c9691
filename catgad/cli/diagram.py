"""`catgad diagram CONFIG NAME`: a process's state machine or a saga's steps, as Mermaid."""

from __future__ import annotations

import argparse

from catgad.config import load_config
from catgad.config.model import Config
from catgad.diagrams.mermaid import emits, process_diagram, saga_diagram
from catgad.diagrams.svg import process_svg, saga_svg
from catgad.errors import NotFound


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
    if name in config.processes:
        process = config.processes[name]
        return process_svg(process) if form == "svg" else process_diagram(process)
    if name in config.sagas:
        saga = config.sagas[name]
        if form == "svg":
            return saga_svg(saga, emits(config))
        return saga_diagram(saga, emits(config))
    missing = NotFound("process or saga", name)
    known = sorted([*config.processes, *config.sagas])
    missing.detail += f" (known: {', '.join(known) or 'none'})"
    raise missing
