"""Append to a SQLite store from many tasks until killed, printing each acknowledged command id.

Usage: python crash_writer.py PATH full|normal PREFIX

test_sqlite_crash.py reads the ids as they come and kills this process with
SIGKILL while appends are in flight. Every command appends three events
carrying its command id as causationid, so a partial command would show.
"""

from __future__ import annotations

import asyncio
import sys

from catgad.envelope import Envelope
from catgad.errors import ConcurrencyError
from catgad.store.sqlite import SQLiteStore

TASKS = 32
STREAMS = 5


async def main(path: str, synchronous: str, prefix: str) -> None:
    store = SQLiteStore(path, synchronous="full" if synchronous == "full" else "normal")
    await store.open()

    async def writer(w: int) -> None:
        for i in range(1_000_000):
            cid = f"{prefix}{w}-{i}"
            stream = f"S-{(w + i) % STREAMS}"
            events = [Envelope(type="Tick", data={"k": k}, causationid=cid) for k in range(3)]
            if w % 2:  # half the writers use optimistic concurrency, half append blindly
                while True:
                    version = await store.stream_version(stream)
                    try:
                        await store.append(stream, events, expected_version=version, command_id=cid)
                        break
                    except ConcurrencyError:
                        continue
            else:
                await store.append(stream, events, expected_version=None, command_id=cid)
            # only now is the append acknowledged
            sys.stdout.write(cid + "\n")
            sys.stdout.flush()

    await asyncio.gather(*(writer(w) for w in range(TASKS)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
