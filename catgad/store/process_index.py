"""The process index: what a store keeps about process instances so that a daemon finds the
timers that fall due, lists instances and counts them without reading every stream.

    index = process_index(store)                      # the backend's own, beside its store code
    await index.put("Fulfilment", [InstanceRow(...)]) # after each decision appended
    for timer in await index.due("Fulfilment", now, limit=500): ...
    await index.listing("Fulfilment", state="review")

The instance streams (`Process-<name>-<id>`) stay the truth; the index is derived from them
(catgad.processes.runner writes it after each append and repairs it from its log follower),
so it may lag or hold stale entries, never lose one for good:

- `put` keeps, per instance, the row of the highest stream version given: a late or repeated
  write never moves a row back. A row's `due` is when the runner must next act on the
  instance (its pending timer, or at once: commands announced and not yet delivered).
- `due` answers "due at or before now, up to `limit`, earliest first" touching only due
  entries (an index on (process, due), a sorted set, time-bucketed subjects). An entry may be
  stale (the instance moved on): the runner reads the stream before acting, and `drop`s it.
- `listing` and `summary` serve `GET /processes/{name}` and the metrics; `asking`, the
  operator inbox (the approvals waited for, oldest first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast, runtime_checkable

from catgad.store.protocol import EventStore


@dataclass(frozen=True, slots=True)
class InstanceRow:
    instance: str
    state: str | None
    status: str | None
    version: int  # the instance stream's version the row was derived from
    updated_at: float
    due: float | None = None  # when the runner must act next (a timer, a delivery)
    asked_at: float | None = None  # when the approval it waits for was asked

    def to_json(self) -> dict[str, Any]:
        return {
            "i": self.instance,
            "s": self.state,
            "st": self.status,
            "v": self.version,
            "u": self.updated_at,
            "d": self.due,
            "a": self.asked_at,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> InstanceRow:
        return cls(
            doc["i"], doc["s"], doc["st"], int(doc["v"]), float(doc["u"]), doc["d"], doc["a"]
        )


@dataclass(frozen=True, slots=True)
class DueTimer:
    instance: str
    due: float
    ref: Any = None  # the backend's handle on the entry, for `drop`


@dataclass(frozen=True, slots=True)
class Summary:
    states: dict[str, int]  # instances per state
    approvals: int  # instances waiting for a person's decision
    oldest_approval: float | None  # when the longest-waiting one was asked


@runtime_checkable
class ProcessIndex(Protocol):
    durable: bool  # kept with the store's events: the runner may resume from its checkpoint

    async def put(self, process: str, rows: Sequence[InstanceRow]) -> None:
        """Record rows; an instance's row is replaced only by one of a higher version."""

    async def due(self, process: str, now: float, limit: int) -> list[DueTimer]:
        """Entries due at or before `now`, earliest first, at most `limit`."""

    async def next_due(self, process: str) -> float | None:
        """The earliest due time of any entry (due already or not); None when none."""

    async def drop(self, process: str, timer: DueTimer) -> None:
        """Forget an entry met stale or fired (where `put` did not replace it already)."""

    async def listing(self, process: str, state: str | None = None) -> list[InstanceRow]:
        """Every instance's row, or those in `state`."""

    async def asking(self, process: str, limit: int) -> list[InstanceRow]:
        """Rows of instances waiting for a person's decision, the longest waiting first, at
        most `limit` (the operator inbox: never every row)."""

    async def summary(self, process: str) -> Summary: ...


def process_index(store: EventStore) -> ProcessIndex:
    """The index kept in `store`, by its backend."""
    from catgad.store.memory import MemoryStore
    from catgad.store.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        from catgad.store.sqlite_process_index import SQLiteProcessIndex

        return SQLiteProcessIndex(store)
    if isinstance(store, MemoryStore):
        from catgad.store.memory_process_index import memory_index

        return memory_index(store)
    kind = type(store).__name__  # the server stores' modules are imported only when used
    if kind == "PostgresStore":
        from catgad.store.postgres import PostgresStore
        from catgad.store.postgres_process_index import PostgresProcessIndex

        return PostgresProcessIndex(cast(PostgresStore, store))
    if kind == "RedisStore":
        from catgad.store.redis import RedisStore
        from catgad.store.redis_process_index import RedisProcessIndex

        return RedisProcessIndex(cast(RedisStore, store))
    if kind == "NATSStore":
        from catgad.store.nats import NATSStore
        from catgad.store.nats_process_index import NATSProcessIndex

        return NATSProcessIndex(cast(NATSStore, store))
    # a store of a plugin: an index in this process's memory (rebuilt from the log)
    from catgad.store.memory_process_index import memory_index

    return memory_index(store)


def summarise(rows: Sequence[InstanceRow]) -> Summary:
    """A summary computed from rows (backends that keep no counts of their own)."""
    states: dict[str, int] = {}
    asked = [r.asked_at for r in rows if r.asked_at is not None]
    for row in rows:
        if row.state is not None:
            states[row.state] = states.get(row.state, 0) + 1
    return Summary(states, len(asked), min(asked) if asked else None)
