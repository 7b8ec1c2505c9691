"""`catgad bench`: the Order workload through catgad and its baselines, figures to RESULTS.md.

The benchmark lives in the top-level `bench/` directory of a source checkout
(it measures catgad against raw sqlite3 and the `eventsourcing` library, which
an installed daemon has no use for). This verb finds it beside the `catgad`
package when it is not importable already.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType

import catgad
from catgad.errors import CatgadError, UsageError

SYSTEMS = ("raw", "eventsourcing", "engine", "http")


class BenchFailed(CatgadError):
    """A measured run went wrong (wrong event count, daemon error): no figures reported."""

    slug = "bench-failed"
    title = "Benchmark failed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options; `python -m bench.run` takes the same."""
    parser.add_argument(
        "--aggregates",
        type=int,
        default=None,
        metavar="N",
        help="orders in the workload (default 1000; 20 with --quick)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        metavar="N",
        help="run the workload N times on fresh order ids (default 1)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=64,
        metavar="N",
        help="orders in flight: engine workers, HTTP connections, raw sqlite3 "
        "batch size (default 64)",
    )
    parser.add_argument(
        "--synchronous",
        choices=("full", "normal", "both"),
        default="both",
        help="SQLite durability, the same for every system (default: both, full first)",
    )
    parser.add_argument(
        "--only",
        default=",".join(SYSTEMS),
        metavar="LIST",
        help=f"comma-separated subset of {','.join(SYSTEMS)} (default: all)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        metavar="N",
        help="runs of each system, medians reported (default 3; 1 with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke size: 20 orders and one repeat, unless given otherwise",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="FILE",
        help="results file (default bench/RESULTS.md of the checkout; '-' for none)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the databases and daemon logs in DIR (default: a "
        "temporary directory, removed afterwards)",
    )


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure commands/s and latency against raw sqlite3 and eventsourcing",
        description="Run the Order workload (CreateOrder, PayOrder, ShipOrder per order) "
        "through the in-process engine and a `catgad run` daemon over HTTP, and the same "
        "events through raw sqlite3 and the `eventsourcing` library, at the same SQLite "
        "durability. Every run checks the store holds exactly the expected events. Prints "
        "a table and writes the figures and ratios to bench/RESULTS.md.",
    )
    add_arguments(parser)


def locate_bench() -> ModuleType:
    """`bench.run` of the checkout holding this catgad, else an installed `bench` package.

    Another module named `bench` may already be imported (under pytest,
    `tests/bench/` is a namespace package of that name): it is set aside.
    """
    root = Path(catgad.__file__).resolve().parent.parent
    ours = root / "bench"
    if (ours / "run.py").is_file():
        loaded = sys.modules.get("bench")
        if loaded is not None and Path(getattr(loaded, "__file__", None) or "").parent != ours:
            for name in [n for n in sys.modules if n == "bench" or n.startswith("bench.")]:
                del sys.modules[name]
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
    try:
        return importlib.import_module("bench.run")
    except ModuleNotFoundError as exc:
        if exc.name not in ("bench", "bench.run"):
            raise
    raise UsageError(
        f"catgad bench needs a source checkout: bench/ was not found beside {root / 'catgad'}"
    )


def run(args: argparse.Namespace) -> int:
    runner = locate_bench()
    workload = importlib.import_module("bench.workload")
    try:
        options = runner.options_from(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        code: int = runner.execute(options)
    except (workload.VerificationError, RuntimeError) as exc:
        raise BenchFailed(str(exc)) from None
    return code
