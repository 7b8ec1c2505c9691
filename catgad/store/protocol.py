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
