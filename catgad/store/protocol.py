"""The event store seam: what every backend promises (see tests/contracts/store.py)."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from catgad.envelope import Envelope


class Capability(enum.Flag):
    """Differences between backends, declared rather than hidden."""

    NONE = 0
    DURABLE = enum.auto()  # survives a restart of the daemon
    GAPLESS_GLOBAL_ORDER = enum.auto()  # read_all never skips a position a later read returns
    MULTI_PROCESS = enum.auto()  # several daemons may share it


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append (or the first run of an idempotent command) produced."""

    stream: str
    command_id: str
    version: int  # stream version after the append
    events: list[Envelope] = field(default_factory=list)
    duplicate: bool = False  # True when the command id was seen before: nothing appended

    @property
    def first_version(self) -> int:
        return self.version - len(self.events) + 1


@dataclass(frozen=True, slots=True)
class Snapshot:
    stream: str
    version: int
    state: dict[str, Any]


@runtime_checkable
class EventStore(Protocol):
    """An append-only log of streams.

    append() is atomic: all of a command's events land, or none do. When
    `expected_version` is not None the stream must be at exactly that version
    (0 = does not exist yet), else ConcurrencyError. A `command_id` already
    recorded returns the first AppendResult with `duplicate=True` and appends
    nothing, whatever the expected version; reusing it on another stream raises
    IdempotencyKeyReused. Events are given without `streamversion`; the store
    assigns 1-based versions and returns the stored envelopes.
    """

    name: str
    capabilities: Capability

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise Unavailable when the backend cannot be reached."""

    async def append(
        self,
        stream: str,
        events: Sequence[Envelope],
        *,
        expected_version: int | None,
        command_id: str,
    ) -> AppendResult: ...

    async def read(
        self, stream: str, *, after: int = 0, limit: int | None = None
    ) -> list[Envelope]:
        """Events of one stream with streamversion > after, in order."""

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[Envelope]:
        """Events of every stream with global position > after, ascending; sets `.position`."""

    async def stream_version(self, stream: str) -> int:
        """0 for a stream that does not exist."""

    async def find_command(self, command_id: str) -> AppendResult | None:
        """The recorded result of a command id, or None."""

    async def save_snapshot(self, snapshot: Snapshot) -> None: ...

    async def load_snapshot(self, stream: str) -> Snapshot | None: ...


@runtime_checkable
class Coordination(Protocol):
    """Leases and checkpoints kept in the store, shared by every daemon that uses it.

    A lease names one job that must run in one place at a time (the outbox
    relay: `relay:<service>`). Its expiry is measured by the backend's own
    clock (SQLite: the host's clock read by SQL; a server: the server's), never
    by comparing one daemon's clock with another's, so a holder that stops
    renewing loses the lease `ttl` seconds after its last renewal.

    A checkpoint is a named position (in `read_all` order) saved by whoever
    holds the matching lease. `save_checkpoint` never moves it backwards: a
    holder that stalled, lost its lease and wakes up late cannot undo its
    successor's progress. Moving it back on purpose (a rebuild) is
    `reset_checkpoint`. What is not tested in tests/contracts/coordination.py is
    not promised.
    """

    async def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        """Take the lease if free or expired, renew it if `owner` holds it; True if now held.

        False while another owner's unexpired lease stands. A renewal sets the
        expiry to now + ttl (seconds).
        """

    async def release_lease(self, name: str, owner: str) -> None:
        """Give the lease up at once, if `owner` holds it; otherwise do nothing."""

    async def lease_owner(self, name: str) -> str | None:
        """Who holds the lease now; None when nobody does or the last holder's lease expired."""

    async def load_checkpoint(self, name: str) -> int:
        """The saved position, 0 when none was saved."""

    async def save_checkpoint(self, name: str, position: int) -> None:
        """Record progress: the checkpoint becomes max(saved, position)."""

    async def reset_checkpoint(self, name: str, position: int = 0) -> None:
        """Set the checkpoint to exactly `position`, backwards too (rebuilds, replays)."""


@runtime_checkable
class RewritableStore(EventStore, Protocol):
    """A store that can replace stored events' data in place: what `catgad migrate` needs.

    Kept apart from EventStore so a backend is usable before it can rewrite;
    the contract suite runs the rewrite tests on every store that is one.
    """

    async def rewrite(self, events: Sequence[Envelope]) -> int:
        """Replace the `data` and `dataschemaversion` of stored events, in one transaction.

        Each event is found by `id` and must be the one stored at its `subject`
        and `streamversion`, else StoreError and nothing is written. Everything
        else stored (type, time, stream, version, position, other attributes) is
        kept. Returns how many events were rewritten (all of them).
        """
