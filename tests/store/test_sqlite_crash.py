"""An acknowledged append survives kill -9 of the process that wrote it, and no command is torn."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from catgad.envelope import Envelope
from catgad.store.sqlite import SQLiteStore, Synchronous
from tests.contracts.store import read_everything, unplaced

pytestmark = [pytest.mark.sqlite, pytest.mark.slow]

WRITER = Path(__file__).with_name("crash_writer.py")
ACKS_BEFORE_KILL = 300


async def run_until_killed(path: Path, synchronous: Synchronous, prefix: str) -> list[str]:
    """Start a writer, collect its acks, SIGKILL it mid-flight; the acked command ids."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WRITER),
        str(path),
        synchronous,
        prefix,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    acked: list[str] = []
    killed = False
    try:
        while len(acked) < ACKS_BEFORE_KILL:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
            if not line:
                await proc.wait()
                err = (await proc.stderr.read()).decode()
                pytest.fail(f"writer ended early ({proc.returncode}):\n{err}")
            acked.append(line.decode().strip())
        proc.send_signal(signal.SIGKILL)  # appends are still queued and committing
        killed = True
    finally:
        # Signalling again would poll, and could reap the dead child before asyncio's
        # child watcher does (which then reports 255): kill only if not killed yet.
        if not killed and proc.returncode is None:
            proc.kill()
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return acked


@pytest.mark.parametrize("synchronous", ["full", "normal"])
async def test_acknowledged_appends_survive_kill_9(
    tmp_path: Path, synchronous: Synchronous
) -> None:
    path = tmp_path / "crash.db"
    acked = await run_until_killed(path, synchronous, "a")
    # the next writer recovers the file a killed one left, and is killed in turn
    acked += await run_until_killed(path, synchronous, "b")

    store = SQLiteStore(path, synchronous=synchronous)
    await store.open()
    try:
        everything = await read_everything(store)
        assert [e.position for e in everything] == list(range(1, len(everything) + 1))
        assert len({e.id for e in everything}) == len(everything)

        by_command: dict[str, list[Envelope]] = defaultdict(list)
        by_stream: dict[str, list[int]] = defaultdict(list)
        for e in everything:
            by_command[e.causationid or ""].append(e)
            by_stream[e.subject or ""].append(e.streamversion or 0)
        for stream, versions in by_stream.items():
            assert sorted(versions) == list(range(1, len(versions) + 1)), stream
        for cid, events in by_command.items():  # all of a command, or none of it
            assert [e.data["k"] for e in events] == [0, 1, 2], cid
            first = events[0].streamversion or 0
            assert [e.streamversion for e in events] == [first, first + 1, first + 2], cid
            found = await store.find_command(cid)
            assert found is not None and unplaced(found.events) == unplaced(events), cid

        for cid in acked:  # every acknowledged command is there, whole
            found = await store.find_command(cid)
            assert found is not None, f"acknowledged command {cid} was lost"
            assert [e.causationid for e in found.events] == [cid] * 3
            stored = await store.read(found.stream, after=found.first_version - 1, limit=3)
            assert unplaced(stored) == unplaced(found.events)
        assert set(acked) <= set(by_command)
    finally:
        await store.close()
