"""The Order workload's options: `catgad bench [orders]` and `python -m bench.run` take the same.

Their own module, so that the benchmark (bench/run.py, in a checkout) and the
verb (catgad/cli/bench.py, which imports the benchmark) both use them without
importing each other.
"""

from __future__ import annotations

import argparse
from pathlib import Path

SYSTEMS = ("raw", "eventsourcing", "engine", "http")


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
