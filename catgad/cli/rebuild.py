"""`catgad rebuild CONFIG PROJECTION`: rebuild a read model from scratch, beside the old one.

When a daemon runs the projection (holds its lease), the request is recorded
in the target and that daemon rebuilds; this command follows its progress
until the swap. Otherwise this process takes the lease and rebuilds itself.
Either way queries keep answering from the old read model until the swap.
Exit 0 once swapped, 1 if the projection failed on a poison event meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from catgad.app.load import load_config
from catgad.errors import UsageError
from catgad.observability.logs import configure_logging
from catgad.projections.section import PROJECTIONS

PROGRESS_EVERY = 1.0  # seconds between progress lines


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "rebuild",
        help="rebuild a projection's read model from scratch",
        description="Rebuild PROJECTION from the first stored event into a new read model "
        "beside the current one, then swap them in one transaction. Queries keep answering "
        "from the current read model meanwhile. If a daemon runs the projection, it does the "
        "work and this command follows its progress; otherwise this process does it.",
    )
    parser.add_argument("config", metavar="CONFIG", help="the service's YAML file")
    parser.add_argument("projection", metavar="PROJECTION", help="a projection of the config")
    parser.add_argument(
        "--no-wait", action="store_true", help="request the rebuild and return at once"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, metavar="SECONDS", help="give up after this long"
    )


def run(args: argparse.Namespace) -> int:
    configure_logging("warning")
    config = load_config(args.config)
    PROJECTIONS.of(config)[args.projection] = _enabled(config, args.projection)
    return asyncio.run(_rebuild(config, args))


def _enabled(config: Any, name: str) -> Any:
    projection = PROJECTIONS.of(config).get(name)
    if projection is None:
        known = ", ".join(sorted(PROJECTIONS.of(config))) or "none"
        raise UsageError(f"no projection {name!r} in {config.path} (projections: {known})")
    projection.enabled = True  # a disabled projection can still be rebuilt on demand
    return projection


async def _rebuild(config: Any, args: argparse.Namespace) -> int:
    from catgad.runtime import Runtime

    async with Runtime.start(config, relay=False) as runtime:
        manager = runtime.projections
        runner = manager.runner(args.projection)
        await runner.open()
        lease = runner.lease
        holder = await lease.store.lease_owner(lease.name) if lease is not None else None
        if holder is not None and not runner.projection.target.has_table:
            raise UsageError(
                f"daemon {holder} delivers {args.projection}; ask it to rebuild: "
                f"POST /projections/{args.projection}/rebuild"
            )
        started = await runner.request_rebuild()
        print(f"{args.projection}: " + ("rebuild requested" if started else "already rebuilding"))
        if args.no_wait:
            return 0
        deadline = None if args.timeout is None else time.monotonic() + args.timeout
        if holder is None:
            runner.start()  # no daemon runs it: this process does the work
        else:
            print(f"{args.projection}: daemon {holder} rebuilds it; following its progress")
        return await _follow(runner, deadline, here=holder is None)


async def _follow(runner: Any, deadline: float | None, *, here: bool) -> int:
    while True:
        try:
            async with asyncio.timeout(PROGRESS_EVERY):
                await runner.changed.wait()
        except TimeoutError:
            pass
        runner.changed.clear()
        status = await runner.status()
        _print(runner.name, status)
        if status["status"] == "failed":
            print(f"{runner.name}: failed: {status.get('last_error')}", file=sys.stderr)
            return 1
        if status["status"] == "running" and not (here and runner.rebuild_position is not None):
            print(f"{runner.name}: rebuilt; checkpoint {status['checkpoint']}")
            return 0
        if deadline is not None and time.monotonic() > deadline:
            print(f"{runner.name}: still rebuilding; it goes on without us", file=sys.stderr)
            return 1


def _print(name: str, status: dict[str, Any]) -> None:
    progress = status.get("rebuild")
    if progress is None:
        return
    eta = progress.get("eta_seconds")
    print(
        f"{name}: {progress['percent']:5.1f}%  {progress['position']}/{progress['head']}"
        f"  {progress['events_per_second']:.0f} events/s"
        + (f"  about {eta:.0f}s left" if eta is not None else ""),
        flush=True,
    )
