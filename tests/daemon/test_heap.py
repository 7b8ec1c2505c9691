"""catgad.heap.settle (what `catgad run` calls once started) widens the young generation,
once; a Runtime started as a library leaves the process's collector settings alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers.daemon import ORDERS_YAML

SETTLED = """
import asyncio, gc, sys
from catgad import heap
from catgad.app.load import load_config
from catgad.runtime import Runtime

async def main() -> None:
    config = load_config(sys.argv[1], env={"CATGAD_REDIS_PROJECTIONS": "false"})
    config.store.path = sys.argv[2]
    async with Runtime.start(config, projections=True):
        print("GC", gc.get_threshold()[0])  # a library's runtime: the process's settings unchanged
    heap.settle()
    heap.settle()  # once: the second call changes nothing
    print("GC", gc.get_threshold()[0], gc.get_freeze_count() > 0)

asyncio.run(main())
"""


def test_settle_widens_the_young_generation_and_freezes_once(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SETTLED, str(ORDERS_YAML), str(tmp_path / "store.db")],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    before, after = [line[3:] for line in done.stdout.splitlines() if line.startswith("GC ")]
    assert before == "700"
    assert after == "10000 True"
