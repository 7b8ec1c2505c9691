"""Run by test_index_crash.py as a process of its own: a process runner on a SQLite file
whose index dies (SIGKILL, this very process) on the first write of a row in `state`, that
is, between the append of the decision that entered it and its index write.

    python index_crash_child.py <config.yaml> <events.db> <state>
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from catgad.app.load import load_config
from catgad.consumer.settings import LeasedSettings
from catgad.store.process_index import InstanceRow
from catgad.store.sqlite import SQLiteStore
from catgad.store.sqlite_process_index import SQLiteProcessIndex
from tests.processes.wiring import wired_runner


class DiesOnWrite(SQLiteProcessIndex):
    def __init__(self, store: SQLiteStore, state: str) -> None:
        super().__init__(store)
        self.state = state

    async def put(self, process: str, rows: Sequence[InstanceRow]) -> None:
        if any(row.state == self.state for row in rows):
            os.kill(os.getpid(), signal.SIGKILL)  # as a power cut: nothing more is written
        await super().put(process, rows)


async def main(config_path: Path, db: Path, state: str) -> None:
    config = load_config(config_path, env={})
    store = SQLiteStore(db)
    await store.open()
    engine, runner = wired_runner(
        config,
        store,
        owner="child",
        index=DiesOnWrite(store, state),
        settings=LeasedSettings(lease_ttl=1.0, poll_interval=0.05),
    )
    await runner.start()
    await engine.execute("PlaceOrder", {"order_id": "c1", "total": 10})
    await asyncio.sleep(60)  # the instance starts, its timer falls due in 1 s: one ends us
    raise SystemExit(f"no index write of a row in {state}")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]))
