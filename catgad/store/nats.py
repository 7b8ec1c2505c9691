"""An event store on NATS JetStream: one message per command, versions checked by the server.

Oldest supported server: NATS 2.9 (allow_direct reads, `next_by_subj`,
ephemeral consumers by create request); open() refuses anything older.
Nothing here needs 2.10+, and both 2.9 and the newest release run the suite.

Layout (nats_codec has the details): one JetStream stream (option `stream`,
default CATGAD) holds subject `<subject_prefix>.<token(stream id)>` per event
stream; each append is ONE message carrying all its events, so it is atomic
on every server version. Four KV buckets beside it: `<stream>_ids` (id claims,
nats_claims), `<stream>_snapshots`, `<stream>_coord` (leases, nats_coordination),
`<stream>_rewrites` (rewritten messages, nats_rewrite).

Guarantees and how:
- Optimistic concurrency: the message is published with
  Nats-Expected-Last-Subject-Sequence = the sequence of the subject's last
  message, whose payload says which version it led to (kept in a small cache,
  else read with a direct get). JetStream refuses it (10071) if anything
  landed on the subject since; the store re-reads and raises ConcurrencyError
  with the actual version, or, when no version was expected, tries again.
- Atomicity: one message per command (JetStream's atomic batch needs 2.12),
  so a command's events must fit the server's max_payload (1 MB by default).
- Idempotency: Nats-Msg-Id = the command id covers concurrent senders within
  the duplicate window; claims make it hold for ever (nats_claims). An event
  id derived from the append's command id (catgad.ids, as catgad's writers
  make them) is unique with it and needs no claim of its own; any other event
  id is claimed too.
- Global order: event i of the message with stream sequence q is at position
  `q * 2**16 + i`: strictly increasing, not gapless; read_all(after=p) resumes
  inside a message. JetStream makes a sequence visible only in order, so a
  reader never skips a message that appears later at a lower position.
- Durability: an append returns after JetStream's ack (file storage by
  default; with `storage: memory` a server restart loses everything, and the
  store re-creates its streams when it notices).

Cost: an append is 2 JetStream writes in two round trips (the command id
claim, then the message), plus one claim per event whose id does not derive
from the command, sent with the command's. That is the floor for these
guarantees on 2.9: a create-only claim is the one request that both checks
and records an id, and any id recorded only after the message could be lost
by a crash in between, and with it idempotency after the duplicate window.
The client's CPU per request, not the server, limits throughput, so nats_wire
writes protocol frames itself and hands header-less replies over before
nats-py's general processing, and the append path awaits its two replies
with as few coroutine levels as it can (each is resumed per reply).
bench/RESULTS-stores.md has the appends/s against nats-py's own optimistic
js.publish (one write).

Rewrites in place (`catgad migrate`): an overlay of whole messages in KV
bucket `<stream>_rewrites`, read over the log; see nats_rewrite.

Errors: every request is bounded by `timeout`; connection loss, timeouts and
a missing JetStream are Unavailable (retryable), with nats-py reconnecting on
its own; an outcome-unknown append (timed out) may have landed, and retrying
it with the same command id is safe. No nats-py exception leaves these modules.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from catgad.envelope import Envelope
from catgad.errors import (
    ConcurrencyError,
    IdempotencyKeyReused,
    StoreError,
    Unavailable,
    UnsupportedServer,
)
from catgad.ids import event_id
from catgad.natsclient import OLDEST_SERVER, too_old
from catgad.store.codec import EventRecord, decode_event, encode_events
from catgad.store.nats_claims import Claims, result_of
from catgad.store.nats_codec import (
    DEFAULT_SUBJECT_PREFIX,
    EXPECT_LAST_SUBJECT_SEQ,
    MAX_EVENTS,
    MSG_ID,
    Names,
    Stored,
    decode_message,
    decode_snapshot,
    encode_message,
    encode_snapshot,
    position,
    split_position,
    token,
)
from catgad.store.nats_coordination import NATSCoordination
from catgad.store.nats_rewrite import Overlay
from catgad.store.nats_scan import walk
from catgad.store.nats_wire import DEPENDENCY, ApiError, NoStream, Wire, WrongLastSequence
from catgad.store.protocol import AppendResult, Capability, Snapshot

__all__ = ["DEFAULT_URL", "OLDEST_SERVER", "NATSStore"]

T = TypeVar("T")
DEFAULT_URL = "nats://127.0.0.1:4222"
_ATTEMPTS = 100  # publishes of one append with no expected version before giving up
_HEADS = 100_000  # stream heads cached
Head = tuple[int, int]  # (stream version, sequence of the subject's last message)


class NATSStore(NATSCoordination):
    """The event store on NATS JetStream (see the module docstring)."""

    name = "nats"
    capabilities = Capability.DURABLE | Capability.MULTI_PROCESS

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        stream: str = "CATGAD",
        subject_prefix: str = DEFAULT_SUBJECT_PREFIX,
        replicas: int = 1,
        storage: str = "file",
        timeout: float = 5.0,
        duplicate_window: float = 120.0,
    ) -> None:
        try:
            self._names = Names(stream, subject_prefix)
        except ValueError as exc:
            raise StoreError(f"nats store: {exc}") from exc
        if storage not in ("file", "memory"):
            raise StoreError(f"nats store: storage must be 'file' or 'memory', not {storage!r}")
        if not 1 <= replicas <= 5:
            raise StoreError(f"nats store: replicas must be 1 to 5, not {replicas!r}")
        if timeout <= 0 or duplicate_window < 4 * timeout:
            raise StoreError("nats store: need timeout > 0 and duplicate_window >= 4 * timeout")
        self.url = url
        self.timeout = timeout
        self._configs = self._names.configs(storage, replicas, duplicate_window)
        self._window = duplicate_window
        self._wire: Wire | None = None
        self._claims: Claims | None = None
        self._overlay: Overlay | None = None
        self._heads: dict[str, Head] = {}
        self._ensuring: asyncio.Task[None] | None = None

    @property
    def names(self) -> Names:
        """Where this store keeps things: its JetStream streams, subjects and keys."""
        return self._names

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        if self._wire is not None:
            return
        wire = Wire(self.url, self.timeout)
        await wire.connect(self._reconnected)
        try:
            why = too_old(wire.server_version(), self.url)
            if why is not None:
                raise UnsupportedServer(why)
            await self._ensure(wire)
        except BaseException:
            await wire.close()
            raise
        self._wire = wire
        self._overlay = Overlay(wire, self._names)
        self._claims = Claims(wire, self._names, self._window, self._overlay)

    async def close(self) -> None:
        wire, self._wire = self._wire, None
        ensuring, self._ensuring = self._ensuring, None
        if ensuring is not None:
            ensuring.cancel()
        if wire is not None:
            await wire.close()

    async def ping(self) -> None:
        wire = self._open()
        try:
            await wire.api(f"$JS.API.STREAM.INFO.{self._names.stream}")
        except ApiError as exc:
            if exc.code != 10059:  # stream not found: re-created below
                raise exc.mapped() from exc
            await self._ensure(wire)

    def _open(self) -> Wire:
        if self._wire is None:
            raise Unavailable(DEPENDENCY, "the store is closed")
        return self._wire

    async def _ensure(self, wire: Wire) -> None:
        created = await wire.ensure_streams(self._configs)
        if self._names.stream in created:
            self._heads.clear()  # a new, empty log: cached versions are void

    async def _reconnected(self) -> None:
        # A memory-storage server forgets its streams on restart: re-create them in the
        # background (the callback runs inside nats-py's reconnect loop). The cached heads
        # may describe a log that is gone; they are only a shortcut, so drop them.
        self._heads.clear()
        if self._wire is not None and (self._ensuring is None or self._ensuring.done()):
            self._ensuring = asyncio.get_running_loop().create_task(self._ensure_quietly())

    async def _ensure_quietly(self) -> None:
        with contextlib.suppress(StoreError):
            await self._ensure(self._open())

    async def _run(self, operation: Callable[[Wire, Claims], Awaitable[T]]) -> T:
        """Run once; if a stream did not answer, re-create what is missing and run again."""
        wire, claims = self._open(), self._claims
        assert claims is not None
        try:
            return await operation(wire, claims)
        except NoStream:
            await self._ensure(wire)
        try:
            return await operation(wire, claims)
        except NoStream as exc:
            raise Unavailable(DEPENDENCY, f"JetStream stream missing: {exc}") from exc

    # -- appending ---------------------------------------------------------------------

    async def append(
        self,
        stream: str,
        events: Sequence[Envelope],
        *,
        expected_version: int | None,
        command_id: str,
    ) -> AppendResult:
        records = encode_events(stream, events)
        if len(records) > MAX_EVENTS:
            raise StoreError(f"a command may append at most {MAX_EVENTS} events")
        loose, borrowed = _own_ids(command_id, records, events)
        # As _run, written out: every coroutine level between a task and the future it
        # waits on is resumed on each of an append's two replies, a cost that adds up to
        # more than a tenth of the client's CPU at thousands of appends per second.
        wire, claims = self._open(), self._claims
        assert claims is not None
        args = (stream, records, expected_version, command_id, loose, borrowed)
        try:
            return await self._append(wire, claims, *args)
        except NoStream:
            await self._ensure(wire)
        try:
            return await self._append(wire, claims, *args)
        except NoStream as exc:
            raise Unavailable(DEPENDENCY, f"JetStream stream missing: {exc}") from exc

    async def _append(
        self,
        wire: Wire,
        claims: Claims,
        stream: str,
        records: list[EventRecord],
        expected: int | None,
        command: str,
        loose: list[str],
        borrowed: dict[str, str],
    ) -> AppendResult:
        ids = [r.id for r in records]
        head = self._heads.get(stream)
        if expected is not None:
            if head is None and expected == 0:
                head = (0, 0)  # a guess, checked by the server like any other
            elif head is None or head[0] != expected:
                head = await self._head(wire, stream)
                if head[0] != expected:  # a conflict, unless it repeats a recorded append
                    first = await claims.known(command, stream, ids, borrowed)
                    if first is None:
                        raise ConcurrencyError(stream, expected, head[0])
                    return first
        elif head is None:
            head = await self._head(wire, stream)
        bodies = [r.body for r in records]
        version = head[0] + len(bodies)
        payload = encode_message(command, stream, version, bodies)
        size = len(payload) + 256  # + headers, + a version with more digits on a retry
        if size > wire.max_payload:  # refused before anything is claimed
            raise StoreError(
                f"the events of command {command!r} take about {size} bytes, more than one"
                f" NATS message may hold ({wire.max_payload}, the server's max_payload)"
            )
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = await claims.claim(command, stream, head[1], ids, loose, borrowed)
        if first is not None:  # it repeats an append already recorded
            return first
        lower = head[1]
        subject = self._names.subject(stream)
        msg_id = token(command)
        for _ in range(_ATTEMPTS):
            # A sender of the same command may publish too; the Msg-Id keeps one of the two
            # out only while both fall within the duplicate window.
            if loop.time() - started > self._window / 2:
                raise Unavailable(DEPENDENCY, f"append of {command!r} took too long; retry it")
            if version != head[0] + len(bodies):  # the head moved: a retry
                version = head[0] + len(bodies)
                payload = encode_message(command, stream, version, bodies)
            headers = {MSG_ID: msg_id, EXPECT_LAST_SUBJECT_SEQ: str(head[1])}
            # wire.publish inlined: one level less waiting on the reply (see append)
            future = await wire.send(subject, payload, headers)
            try:
                ack = wire.outcome(await future, subject)
            except WrongLastSequence:
                found = await claims.find(stream, lower, command)
                if found is not None:  # another sender of this command won
                    return result_of(found, duplicate=True)
                head = await self._head(wire, stream)
                if expected is not None and head[0] != expected:
                    # the claim stays: a sender of this command that took it over may
                    # still publish (see nats_claims)
                    raise ConcurrencyError(stream, expected, head[0]) from None
                continue
            if ack.duplicate:
                return await self._duplicate(wire, ack.seq, stream, command)
            self._remember(stream, version, ack.seq)
            base = version - len(bodies) + 1
            stored = [
                decode_event(body, stream, base + i, position(ack.seq, i))
                for i, body in enumerate(bodies)
            ]
            return AppendResult(stream, command, version, stored, False)
        raise Unavailable(DEPENDENCY, f"stream {stream!r} is too busy; retry the append")

    async def _duplicate(self, wire: Wire, seq: int, stream: str, command: str) -> AppendResult:
        got = await wire.direct_get(self._names.stream, seq=seq)
        stored = None if got is None else decode_message(got.data)
        if stored is None:
            raise StoreError(f"message {seq} of {self._names.stream} is not a catgad command")
        if stored.stream != stream:
            raise IdempotencyKeyReused(command, f"stream {stored.stream!r}")
        return result_of((seq, await self._overlaid().apply_one(seq, stored)), duplicate=True)

    async def _head(self, wire: Wire, stream: str) -> Head:
        subject = self._names.subject(stream)
        got = await wire.direct_get(self._names.stream, subject=subject, last=True)
        if got is None:
            return 0, 0
        stored = decode_message(got.data)
        if stored is None:
            raise StoreError(f"message {got.seq} on {subject} is not a catgad command")
        self._remember(stream, stored.version, got.seq)
        return stored.version, got.seq

    def _remember(self, stream: str, version: int, seq: int) -> None:
        known = self._heads.get(stream)
        if known is None or seq > known[1]:
            if known is None and len(self._heads) >= _HEADS:
                self._heads.pop(next(iter(self._heads)))  # the oldest entry
            self._heads[stream] = (version, seq)

    # -- reading -------------------------------------------------------------------------

    async def read(
        self, stream: str, *, after: int = 0, limit: int | None = None
    ) -> list[Envelope]:
        return await self._run(lambda wire, _: self._read(wire, stream, after, limit))

    async def _read(self, wire: Wire, stream: str, after: int, limit: int | None) -> list[Envelope]:
        if limit is not None and limit <= 0:
            return []
        head = self._heads.get(stream)
        # versions grow with sequences: nothing at or before a known head is newer than it
        start = head[1] + 1 if head is not None and head[0] <= after else 1
        overlay = self._overlaid()
        await overlay.refresh()
        kept: list[tuple[int, Stored]] = []
        count = 0
        subject = self._names.subject(stream)
        batch = 256 if limit is None else min(limit, 256)
        async with contextlib.aclosing(
            walk(wire, self._names.stream, subject, start, batch)
        ) as msgs:
            async for got in msgs:
                stored = decode_message(got.data)
                if stored is None or stored.stream != stream:
                    continue
                self._remember(stream, stored.version, got.seq)
                if stored.version <= after:
                    continue
                kept.append((got.seq, stored))
                count += stored.version - max(after, stored.first_version - 1)
                if limit is not None and count >= limit:
                    break
        out: list[Envelope] = []
        for seq, stored in await overlay.apply(kept):
            out.extend(e for e in stored.envelopes(seq) if (e.streamversion or 0) > after)
        return out if limit is None else out[:limit]

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[Envelope]:
        return await self._run(lambda wire, _: self._read_all(wire, after, limit))

    async def _read_all(self, wire: Wire, after: int, limit: int) -> list[Envelope]:
        if limit <= 0:
            return []
        seq, index = split_position(after)
        overlay = self._overlaid()
        await overlay.refresh()
        kept: list[tuple[int, Stored]] = []
        count = 0
        names = self._names
        messages = walk(wire, names.stream, "", seq, min(limit, 256))  # "": the whole log
        async with contextlib.aclosing(messages) as msgs:
            async for got in msgs:
                stored = decode_message(got.data)
                if stored is None:
                    continue  # not catgad's: someone else published under our prefix
                kept.append((got.seq, stored))
                count += len(stored.bodies) - (index + 1 if got.seq == seq else 0)
                if count >= limit:
                    break
        out: list[Envelope] = []
        for at, stored in await overlay.apply(kept):
            skip = index + 1 if at == seq else 0  # resume inside the message
            out.extend(stored.envelopes(at)[skip:])
        return out[:limit]

    async def stream_version(self, stream: str) -> int:
        return await self._run(lambda wire, _: self._version(wire, stream))

    async def _version(self, wire: Wire, stream: str) -> int:
        return (await self._head(wire, stream))[0]

    async def find_command(self, command_id: str) -> AppendResult | None:
        return await self._run(lambda _, claims: self._locate(claims, command_id))

    async def _locate(self, claims: Claims, command_id: str) -> AppendResult | None:
        await self._overlaid().refresh()
        return await claims.locate(command_id)

    # -- rewrite in place (catgad migrate): an overlay, see nats_rewrite -----------------

    async def rewrite(self, events: Sequence[Envelope]) -> int:
        return await self._run(lambda _, __: self._overlaid().rewrite(events))

    def _overlaid(self) -> Overlay:
        overlay = self._overlay
        if overlay is None:
            raise Unavailable(DEPENDENCY, "the store is closed")
        return overlay

    # -- snapshots ---------------------------------------------------------------------

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        body = encode_snapshot(snapshot)
        await self._run(lambda wire, _: self._save_snapshot(wire, snapshot, body))

    async def _save_snapshot(self, wire: Wire, snapshot: Snapshot, body: bytes) -> None:
        key = self._names.snapshot_key(snapshot.stream)
        for _ in range(_ATTEMPTS):
            got = await wire.direct_get(self._names.snapshots_stream, subject=key, last=True)
            current = None if got is None or got.deleted else decode_snapshot(got.data)
            # an older snapshot arriving late (a slow writer) must not replace a newer one
            if current is not None and current.version > snapshot.version:
                return
            expect = {EXPECT_LAST_SUBJECT_SEQ: str(0 if got is None else got.seq)}
            try:
                await wire.publish(key, body, expect)
                return
            except WrongLastSequence:
                continue
        raise Unavailable(DEPENDENCY, f"too many snapshot writers for {snapshot.stream!r}")

    async def load_snapshot(self, stream: str) -> Snapshot | None:
        return await self._run(lambda wire, _: self._load_snapshot(wire, stream))

    async def _load_snapshot(self, wire: Wire, stream: str) -> Snapshot | None:
        key = self._names.snapshot_key(stream)
        got = await wire.direct_get(self._names.snapshots_stream, subject=key, last=True)
        if got is None or got.deleted:
            return None
        return decode_snapshot(got.data)


def _own_ids(
    command: str, records: list[EventRecord], events: Sequence[Envelope]
) -> tuple[list[str], dict[str, str]]:
    """The event ids that need claims of their own (those not derived from `command`, as
    catgad's writers derive them: see catgad.ids), and of those the ones that another
    command caused (id -> that command), which might be derived from it."""
    loose = [r.id for i, r in enumerate(records) if r.id != event_id(command, i)]
    if not loose:
        return loose, {}
    causes = {e.id: e.causationid for e in events}
    borrowed = {eid: cause for eid in loose if (cause := causes[eid]) and cause != command}
    return loose, borrowed
