"""Rewriting events in place on NATS (`catgad migrate`): an overlay of whole messages.

Why an overlay. A JetStream message cannot be changed, and copying the log
into a new stream would renumber its sequences, which are the events'
positions (and what every projection checkpoint points at). So a rewrite
leaves the log as it is and writes the whole rewritten message (same
command, stream, version and event count; new bodies, built by
codec.rewritten_body, which keeps every id and attribute but `data` and
`dataschemaversion`) to KV bucket `<stream>_rewrites` under the message's
sequence. Every read of an events message (aggregate reads, read_all,
find_command, the result of a duplicate append) takes the overlay entry
instead when there is one. Positions, versions and ids come from the log
and the copied header, so none can move; appends never touch old messages
and go on meanwhile.

Cost. Nothing while the bucket is empty: a store looks (one STREAM.INFO) at
open and then at most once a second on a read, and once it has found an
entry (or written one) it stays in overlay mode. In that mode every message
read costs one more direct get, those of one read sent together: one round
trip more per read, not per message.

Batches. Everything is checked first (each event must be the one stored at
its subject and version, found by its position, or by its version when it
has none), so a bad batch writes nothing. Then each message's entry is
written with a compare-and-set on the key's last revision (0: none yet), so
two rewriters of one message never lose each other's changes: the loser
re-reads and applies its events again. JetStream 2.9 has no multi-key
transaction, so a crash half-way leaves some messages rewritten (each
whole) and the others as they were: readers get old and new events alike,
which the upcasters turn into the same data, and running migrate again
skips the events already current and rewrites the rest. Nothing is lost
either way.

Other processes. A process that has not seen an entry yet sees the first
rewrite within a second (the recheck); meanwhile it reads the original
event, which its upcasters turn into the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence

from catgad.envelope import Envelope
from catgad.errors import StoreError, Unavailable
from catgad.store.codec import rewrite_target, rewritten_body
from catgad.store.nats_codec import (
    EXPECT_LAST_SUBJECT_SEQ,
    Names,
    Stored,
    decode_message,
    encode_message,
    split_position,
)
from catgad.store.nats_scan import walk
from catgad.store.nats_wire import DEPENDENCY, ApiError, Wire, WrongLastSequence

RECHECK_S = 1.0  # how often a store without entries looks again
_ATTEMPTS = 20  # compare-and-set rounds on one message before giving up as Unavailable
_STREAM_NOT_FOUND = 10059

Message = tuple[int, Stored]  # an events message: its sequence and content


class Overlay:
    """The rewritten messages of one store (see the module docstring)."""

    def __init__(self, wire: Wire, names: Names) -> None:
        self._wire = wire
        self._names = names
        self._active = False  # the bucket has entries: reads consult it
        self._checked = -math.inf

    @property
    def active(self) -> bool:
        return self._active

    async def refresh(self) -> None:
        """Look whether the bucket has entries, unless known or looked at within RECHECK_S."""
        if self._active:
            return
        now = asyncio.get_running_loop().time()
        if now - self._checked < RECHECK_S:
            return
        self._checked = now
        try:
            info = await self._wire.api(f"$JS.API.STREAM.INFO.{self._names.rewrites_stream}")
        except ApiError as exc:
            if exc.code == _STREAM_NOT_FOUND:  # re-created by the store's next ensure
                return
            raise exc.mapped() from exc
        self._active = int(info.get("state", {}).get("messages", 0)) > 0

    async def apply(self, messages: list[Message]) -> list[Message]:
        """The messages as they read now: an overlay entry replaces its message's content."""
        if not self._active or not messages:
            return messages
        keys = [self._names.rewrite_key(seq) for seq, _ in messages]
        entries = await self._wire.last_of(self._names.rewrites_stream, keys)
        out = []
        for (seq, stored), entry in zip(messages, entries, strict=True):
            new = None if entry is None or entry.deleted else decode_message(entry.data)
            out.append((seq, stored if new is None else new))
        return out

    async def apply_one(self, seq: int, stored: Stored) -> Stored:
        return (await self.apply([(seq, stored)]))[0][1]

    # -- writing -------------------------------------------------------------------

    async def rewrite(self, events: Sequence[Envelope]) -> int:
        if not events:
            return 0
        targets = [rewrite_target(e) for e in events]  # StoreError when one does not say
        found: dict[int, Stored] = {}  # the messages read, as they read now
        changes: dict[int, list[tuple[int, Envelope]]] = {}  # seq -> (index, new event)
        for event, (stream, version) in zip(events, targets, strict=True):
            seq, index = await self._locate(event, stream, version, found)
            changes.setdefault(seq, []).append((index, event))
        for seq, edits in changes.items():  # every check before anything is written
            size = len(_edited(found[seq], edits)) + 256  # + headers
            if size > self._wire.max_payload:
                raise StoreError(
                    f"message {seq} rewritten takes about {size} bytes, more than one NATS"
                    f" message may hold ({self._wire.max_payload}, the server's max_payload)"
                )
        pending = list(changes)
        for _ in range(_ATTEMPTS):
            pending = await self._write(pending, changes)
            if not pending:
                self._active = True
                return len(events)
        raise Unavailable(DEPENDENCY, "too many rewriters of the same events at once")

    async def _write(
        self, seqs: list[int], changes: dict[int, list[tuple[int, Envelope]]]
    ) -> list[int]:
        """Write the entries of `seqs` from their current content; the seqs to write again
        (another rewriter changed them meanwhile)."""
        names, wire = self._names, self._wire
        keys = [names.rewrite_key(seq) for seq in seqs]
        entries = await wire.last_of(names.rewrites_stream, keys)
        futures = []
        for seq, key, entry in zip(seqs, keys, entries, strict=True):
            current = None if entry is None or entry.deleted else decode_message(entry.data)
            base = current if current is not None else await self._original(seq)
            expect = {EXPECT_LAST_SUBJECT_SEQ: str(0 if entry is None else entry.seq)}
            futures.append(await wire.send(key, _edited(base, changes[seq]), expect))
        again = []
        failure: BaseException | None = None
        for seq, key, future in zip(seqs, keys, futures, strict=True):
            try:
                await wire.settle(future, key)
            except WrongLastSequence:
                again.append(seq)
            except (StoreError, Unavailable) as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        return again

    async def _original(self, seq: int) -> Stored:
        got = await self._wire.direct_get(self._names.stream, seq=seq)
        stored = None if got is None or got.seq != seq else decode_message(got.data)
        if stored is None:
            raise StoreError(f"message {seq} of {self._names.stream} is not a catgad command")
        return stored

    async def _locate(
        self, event: Envelope, stream: str, version: int, found: dict[int, Stored]
    ) -> tuple[int, int]:
        """(sequence, index) of the message holding `stream` at `version`; StoreError when
        there is none, or the event's position says another."""
        if event.position:
            seq, index = split_position(event.position)
            stored = found.get(seq)
            if stored is None:
                got = await self._wire.direct_get(self._names.stream, seq=seq)
                raw = None if got is None or got.seq != seq else decode_message(got.data)
                if raw is not None:
                    stored = found[seq] = await self.apply_one(seq, raw)
            if (
                stored is not None
                and stored.stream == stream
                and stored.first_version + index == version
                and index < len(stored.bodies)
            ):
                return seq, index
            raise StoreError(f"event {event.id!r}: {stream!r} has no version {version} there")
        subject = self._names.subject(stream)
        messages = walk(self._wire, self._names.stream, subject, 1, 256)
        async with contextlib.aclosing(messages) as msgs:
            async for got in msgs:
                stored = decode_message(got.data)
                if stored is None or stored.stream != stream or stored.version < version:
                    continue
                if stored.first_version > version:
                    break
                if got.seq not in found:
                    found[got.seq] = await self.apply_one(got.seq, stored)
                return got.seq, version - stored.first_version
        raise StoreError(f"event {event.id!r}: {stream!r} has no version {version}")


def _edited(stored: Stored, edits: list[tuple[int, Envelope]]) -> bytes:
    """The message with the edited events' bodies replaced (StoreError for a wrong id)."""
    bodies = list(stored.bodies)
    for index, event in edits:
        bodies[index] = rewritten_body(bodies[index], event)
    return encode_message(stored.command, stored.stream, stored.version, bodies)
