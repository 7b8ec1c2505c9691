"""The process index of the memory store (and the fallback of a plugin's store): rows in a
dict, timers in a heap per process, in this process's memory like the store itself.

`due` walks the heap from its root and descends only below entries already due (the heap
order says nothing later can hide under an entry not due), so it touches the due entries
and their children, never the waiting ones further down. An entry is stale when its
instance's row no longer has that due time: stale entries at the top are popped as met."""

from __future__ import annotations

import heapq
import weakref
from collections.abc import Sequence

from catgad.store.process_index import DueTimer, InstanceRow, Summary
from catgad.store.protocol import EventStore

_INDEXES: weakref.WeakKeyDictionary[EventStore, MemoryProcessIndex] = weakref.WeakKeyDictionary()


def memory_index(store: EventStore) -> MemoryProcessIndex:
    """The one index of `store`: every runner on it shares it, as they share the store."""
    index = _INDEXES.get(store)
    if index is None:
        from catgad.store.memory import MemoryStore

        index = _INDEXES[store] = MemoryProcessIndex(durable=isinstance(store, MemoryStore))
    return index


class MemoryProcessIndex:
    def __init__(self, *, durable: bool = True) -> None:
        # a memory store's index lives exactly as long as its events: as durable as they are;
        # beside another store's durable events it is not (the runner reads the log again)
        self.durable = durable
        self._rows: dict[str, dict[str, InstanceRow]] = {}
        self._timers: dict[str, list[tuple[float, str]]] = {}
        # kept as rows change, so a summary costs nothing per instance
        self._counts: dict[str, dict[str, int]] = {}
        self._asked: dict[str, dict[str, float]] = {}
        self.examined = 0  # heap entries looked at by `due` (tests: due entries only)

    async def put(self, process: str, rows: Sequence[InstanceRow]) -> None:
        known = self._rows.setdefault(process, {})
        heap = self._timers.setdefault(process, [])
        for row in rows:
            old = known.get(row.instance)
            if old is not None and old.version >= row.version:
                continue
            known[row.instance] = row
            counts = self._counts.setdefault(process, {})
            if old is not None and old.state is not None:
                counts[old.state] -= 1
            if row.state is not None:
                counts[row.state] = counts.get(row.state, 0) + 1
            asked = self._asked.setdefault(process, {})
            if row.asked_at is None:
                asked.pop(row.instance, None)
            else:
                asked[row.instance] = row.asked_at
            if row.due is not None and (old is None or old.due != row.due):
                heapq.heappush(heap, (row.due, row.instance))

    def _stale(self, process: str, entry: tuple[float, str]) -> bool:
        row = self._rows.get(process, {}).get(entry[1])
        return row is None or row.due != entry[0]

    async def due(self, process: str, now: float, limit: int) -> list[DueTimer]:
        heap = self._timers.get(process, [])
        while heap and self._stale(process, heap[0]):
            heapq.heappop(heap)
        found: dict[str, float] = {}
        stack = [0] if heap else []
        while stack:
            at = stack.pop()
            self.examined += 1
            when, instance = heap[at]
            if when > now:
                continue
            if not self._stale(process, heap[at]):
                found[instance] = when
            stack.extend(child for child in (2 * at + 1, 2 * at + 2) if child < len(heap))
        earliest = sorted(found.items(), key=lambda item: item[1])[:limit]
        return [DueTimer(instance, when) for instance, when in earliest]

    async def next_due(self, process: str) -> float | None:
        heap = self._timers.get(process, [])
        while heap and self._stale(process, heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    async def drop(self, process: str, timer: DueTimer) -> None:
        """Nothing to do: an entry whose row moved on is stale, and popped when met."""

    async def listing(self, process: str, state: str | None = None) -> list[InstanceRow]:
        rows = self._rows.get(process, {}).values()
        return [row for row in rows if state is None or row.state == state]

    async def asking(self, process: str, limit: int) -> list[InstanceRow]:
        asked = self._asked.get(process, {})
        rows = self._rows.get(process, {})
        oldest = sorted(asked.items(), key=lambda item: item[1])[:limit]
        return [rows[instance] for instance, _ in oldest]

    async def summary(self, process: str) -> Summary:
        states = {s: n for s, n in self._counts.get(process, {}).items() if n}
        asked = self._asked.get(process, {})
        return Summary(states, len(asked), min(asked.values()) if asked else None)
