"""An event store in the process's memory: for tests, `catgad test` and trying things out.

It keeps the encoded bodies rather than the caller's envelopes, so what it
returns behaves exactly like what a durable store returns (plain JSON values,
no aliasing with objects the caller still holds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from catgad.envelope import Envelope
from catgad.errors import ConcurrencyError, IdempotencyKeyReused, StoreError, Unavailable
from catgad.store.codec import (
    EventRecord,
    decode_event,
    decode_state,
    encode_events,
    encode_state,
    owning_command,
    rewrite_target,
    rewritten_body,
)
from catgad.store.protocol import AppendResult, Capability, Snapshot


@dataclass(frozen=True, slots=True)
class _Stored:
    stream: str
    version: int
    command_id: str
    body: bytes


@dataclass(frozen=True, slots=True)
class _Command:
    stream: str
    version: int
    first_position: int  # positions first_position .. first_position + count - 1
    count: int


class MemoryStore:
    """Dicts and one global list. Every method runs without awaiting, so a check
    and the write it guards can never interleave with another task; the lock
    additionally makes one instance safe to share between threads and loops."""

    name = "memory"
    capabilities = Capability.GAPLESS_GLOBAL_ORDER

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = False
        self._log: list[_Stored] = []  # position p is self._log[p - 1]
        self._streams: dict[str, list[int]] = {}  # stream -> positions; version v at [v - 1]
        self._commands: dict[str, _Command] = {}
        self._event_ids: dict[str, str] = {}  # event id -> command id that stored it
        self._snapshots: dict[str, tuple[int, bytes]] = {}
        self._leases: dict[str, tuple[str, float]] = {}  # name -> (owner, monotonic expiry)
        self._checkpoints: dict[str, int] = {}

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    async def ping(self) -> None:
        self._check_open()

    def _check_open(self) -> None:
        if not self._open:
            raise Unavailable("memory store", "not open")

    async def append(
        self,
        stream: str,
        events: Sequence[Envelope],
        *,
        expected_version: int | None,
        command_id: str,
    ) -> AppendResult:
        records = encode_events(stream, events)
        with self._lock:
            self._check_open()
            known = self._known(stream, command_id, records)
            if known is not None:
                return known
            positions = self._streams.get(stream, [])
            current = len(positions)
            if expected_version is not None and expected_version != current:
                raise ConcurrencyError(stream, expected_version, current)
            first = len(self._log) + 1
            for offset, record in enumerate(records):
                self._log.append(_Stored(stream, current + 1 + offset, command_id, record.body))
                self._event_ids[record.id] = command_id
            if records:
                positions.extend(range(first, first + len(records)))
                self._streams[stream] = positions
            version = current + len(records)
            self._commands[command_id] = _Command(stream, version, first, len(records))
            return self._result(command_id, duplicate=False)

    def _known(
        self, stream: str, command_id: str, records: list[EventRecord]
    ) -> AppendResult | None:
        """The first result when this append repeats an earlier one (by command or event ids)."""
        command = self._commands.get(command_id)
        if command is not None:
            if command.stream != stream:
                raise IdempotencyKeyReused(command_id, f"stream {command.stream!r}")
            return self._result(command_id, duplicate=True)
        ids = [r.id for r in records]
        stored = {i: self._event_ids[i] for i in ids if i in self._event_ids}
        owner = owning_command(stream, ids, stored, self._command_shape)
        return None if owner is None else self._result(owner, duplicate=True)

    def _command_shape(self, command_id: str) -> tuple[str, int]:
        command = self._commands[command_id]
        return command.stream, command.count

    def _result(self, command_id: str, *, duplicate: bool) -> AppendResult:
        c = self._commands[command_id]
        events = [self._envelope(p) for p in range(c.first_position, c.first_position + c.count)]
        return AppendResult(c.stream, command_id, c.version, events, duplicate)

    def _envelope(self, position: int) -> Envelope:
        row = self._log[position - 1]
        return decode_event(row.body, row.stream, row.version, position)

    async def read(
        self, stream: str, *, after: int = 0, limit: int | None = None
    ) -> list[Envelope]:
        with self._lock:
            self._check_open()
            positions = self._streams.get(stream, [])
            start = max(after, 0)
            end = len(positions) if limit is None else start + max(limit, 0)
            return [self._envelope(p) for p in positions[start:end]]

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[Envelope]:
        with self._lock:
            self._check_open()
            start = max(after, 0)
            end = min(len(self._log), start + max(limit, 0))
            return [self._envelope(p) for p in range(start + 1, end + 1)]

    async def stream_version(self, stream: str) -> int:
        with self._lock:
            self._check_open()
            return len(self._streams.get(stream, ()))

    async def find_command(self, command_id: str) -> AppendResult | None:
        with self._lock:
            self._check_open()
            if command_id not in self._commands:
                return None
            return self._result(command_id, duplicate=False)

    async def rewrite(self, events: Sequence[Envelope]) -> int:
        with self._lock:
            self._check_open()
            updates: list[tuple[int, _Stored]] = []
            for event in events:  # every event checked before any is replaced: all or none
                stream, version = rewrite_target(event)
                positions = self._streams.get(stream, [])
                if version > len(positions):
                    raise StoreError(f"event {event.id!r}: {stream!r} has no version {version}")
                position = positions[version - 1]
                row = self._log[position - 1]
                updates.append((position, replace(row, body=rewritten_body(row.body, event))))
            for position, row in updates:
                self._log[position - 1] = row
            return len(updates)

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        body = encode_state(snapshot.state)
        with self._lock:
            self._check_open()
            current = self._snapshots.get(snapshot.stream)
            # an older snapshot arriving late (a slow writer) must not replace a newer one
            if current is None or snapshot.version >= current[0]:
                self._snapshots[snapshot.stream] = (snapshot.version, body)

    async def load_snapshot(self, stream: str) -> Snapshot | None:
        with self._lock:
            self._check_open()
            current = self._snapshots.get(stream)
        if current is None:
            return None
        return Snapshot(stream, current[0], decode_state(current[1]))

    # -- coordination: one process, so its monotonic clock is the store's clock --------------

    async def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        with self._lock:
            self._check_open()
            now = time.monotonic()
            held = self._leases.get(name)
            if held is not None and held[0] != owner and held[1] > now:
                return False
            self._leases[name] = (owner, now + ttl)
            return True

    async def release_lease(self, name: str, owner: str) -> None:
        with self._lock:
            self._check_open()
            held = self._leases.get(name)
            if held is not None and held[0] == owner:
                del self._leases[name]

    async def lease_owner(self, name: str) -> str | None:
        with self._lock:
            self._check_open()
            held = self._leases.get(name)
            return held[0] if held is not None and held[1] > time.monotonic() else None

    async def load_checkpoint(self, name: str) -> int:
        with self._lock:
            self._check_open()
            return self._checkpoints.get(name, 0)

    async def save_checkpoint(self, name: str, position: int) -> None:
        with self._lock:
            self._check_open()
            self._checkpoints[name] = max(self._checkpoints.get(name, 0), position)

    async def reset_checkpoint(self, name: str, position: int = 0) -> None:
        with self._lock:
            self._check_open()
            self._checkpoints[name] = position
