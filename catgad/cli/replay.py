"""`catgad replay CONFIG PROJECTION`: apply a projection's dead letters again, after a fix.

Each open dead letter's event is applied to the live read model as it is now
(see catgad.projections.replay), safely beside a running daemon; one that
applies is closed, one that still fails stays open and is listed with its
reason. `--event ID` replays one. For a webhook or plugin projection,
`--from P --to Q` delivers the events at store positions P..Q again (a table
projection is brought back in order by `catgad rebuild` instead).
Exit 0 when every replay applied, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from catgad.app.load import load_config
from catgad.errors import UsageError
from catgad.observability.logs import configure_logging
from catgad.projections.section import PROJECTIONS


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="replay a projection's dead letters after a fix",
        description="Apply the open dead letters of PROJECTION again, now that the cause "
        "is fixed (a mapping in the config, a handler, a target). Safe while a daemon runs "
        "the projection. For webhook and plugin projections, --from/--to delivers a range of "
        "store positions again instead.",
    )
    parser.add_argument("config", metavar="CONFIG", help="the service's YAML file")
    parser.add_argument("projection", metavar="PROJECTION", help="a projection of the config")
    parser.add_argument("--event", metavar="ID", help="replay only the dead letter of this event")
    parser.add_argument("--from", dest="first", type=int, metavar="P", help="first position")
    parser.add_argument("--to", dest="last", type=int, metavar="Q", help="last position")


def run(args: argparse.Namespace) -> int:
    configure_logging("warning")
    if (args.first is None) != (args.last is None):
        raise UsageError("--from and --to go together")
    if args.first is not None and (args.first < 1 or args.last < args.first):
        raise UsageError("expected 1 <= --from <= --to")
    config = load_config(args.config)
    projection = PROJECTIONS.of(config).get(args.projection)
    if projection is None:
        known = ", ".join(sorted(PROJECTIONS.of(config))) or "none"
        raise UsageError(f"no projection {args.projection!r} (projections: {known})")
    projection.enabled = True
    if args.first is not None and projection.target.has_table:
        raise UsageError(
            f"{args.projection} is a {projection.target.kind} read model: replaying a range "
            "would apply events out of order; `catgad rebuild` applies them all, in order"
        )
    return asyncio.run(_replay(config, args))


async def _replay(config: Any, args: argparse.Namespace) -> int:
    from catgad.projections.replay import redeliver
    from catgad.projections.targets.handler import HandlerTarget
    from catgad.runtime import Runtime

    async with Runtime.start(config, relay=False) as runtime:
        manager = runtime.projections
        runner = manager.runner(args.projection)
        await runner.open()
        if args.first is not None:
            assert isinstance(runner.target, HandlerTarget)
            sent = await redeliver(
                runner.projection, runtime.store, runner.target, args.first, args.last
            )
            span = f"{args.first}-{args.last}"
            print(f"{args.projection}: delivered {sent} event(s) of positions {span}")
            return 0
        result = await manager.replay(args.projection, event_id=args.event)
    for item in result["replayed"]:
        print(f"replayed  {item['event_id']}  {item['event_type']}  position {item['position']}")
    for item in result["failed"]:
        print(f"failed    {item['event_id']}  {item['event_type']}  position {item['position']}: "
              f"{item['reason']}")  # fmt: skip
    total = len(result["replayed"]) + len(result["failed"])
    if not total:
        print(
            f"{args.projection}: no open dead letters"
            + (f" for {args.event}" if args.event else "")
        )
    return 1 if result["failed"] else 0
