"""Command and event ids of the NATS store: claimed in a KV bucket, proven by the log.

JetStream's Nats-Msg-Id deduplicates only within the stream's duplicate
window, and only one id per message. So before publishing, an append claims
its command id (`c.<id>` = {stream, lower}) and each event id that is not
derived from it (`e.<id>` = {command}; see catgad.ids) with create-only KV
writes (expected last subject sequence 0), sent together. A derived event id
is unique with its command id: only that command can append it, and its
retries are found by the command claim.

A claim is not a record: the events message is. Whether a claimed command was
recorded is decided by looking for its message on the claimed stream's
subject after `lower` (the subject's last sequence when the claim was made;
the claimant publishes with an expected last subject sequence of at least
that). Hence:

- A crash between claim and publish leaves a claim without a message: the
  command is not recorded, and a retry takes the claim over (a compare-and-
  set on the entry's revision) and publishes.
- A crash after the publish leaves the message: any later retry finds it,
  however late, because the claim points at it.
- Two senders of one command at once may both hold the claim in turn and both
  publish; the Msg-Id (the command id) lets only one message in, since both
  publish within the duplicate window (an append gives up before publishing
  once half the window has passed since it started). The loser gets a
  duplicate ack (2.9) or a wrong-last-sequence answer (2.10+ check that
  first) and reads the winner's message back.
- No claim is ever deleted, not even by a refused append (version conflict,
  clashing ids): a sender of the same command that took the claim over may
  still be about to publish, and its message must stay findable. A claim
  without a message simply means "not recorded" (find_command says None),
  and the next sender of that command takes it over. Once a claim's last
  write is older than the duplicate window its appenders have all given up,
  so it may then move to another stream or a later `lower`.
- An event claim whose command is recorded without that event, or whose
  command claim does not exist (its request failed), or is older than the
  duplicate window and unrecorded, is a leftover that the next append of that
  event id takes over. A younger unrecorded one means the event id may be
  being appended right now: Unavailable (retryable). So a refused command's
  event ids can be sent again at once under the same command id (as the
  engine does), and under a new command id after the duplicate window.
- An event copied under another command id (an import) carries the id and the
  causation of the command that made it. If that id derives from its causing
  command (so has no claim), the copy is that command's duplicate or a clash
  when the command is recorded with it, and is refused while the command is
  not recorded (its own append could not see the copy). A copy that drops the
  causation and keeps a derived id is not recognised: that is the limit of
  skipping those claims.
"""

from __future__ import annotations

import contextlib
import time

from catgad.errors import IdempotencyKeyReused, StoreError, Unavailable
from catgad.ids import derived_index
from catgad.store.codec import owning_command
from catgad.store.nats_codec import (
    EXPECT_LAST_SUBJECT_SEQ,
    MAX_EVENTS,
    Names,
    Stored,
    decode_command_claim,
    decode_event_claim,
    decode_message,
    encode_command_claim,
    encode_event_claim,
    parse_time,
)
from catgad.store.nats_rewrite import Overlay
from catgad.store.nats_scan import walk
from catgad.store.nats_wire import (
    DEPENDENCY,
    Ack,
    Got,
    NoStream,
    Pending,
    Wire,
    WrongLastSequence,
)
from catgad.store.protocol import AppendResult

_ATTEMPTS = 20  # compare-and-set rounds on one key before giving up as Unavailable
_CREATE = {EXPECT_LAST_SUBJECT_SEQ: "0"}

Found = tuple[int, Stored]  # a command's message: its sequence and content
Owners = dict[str, tuple[Got | None, Found | None]]  # command id -> its claim entry and message


def result_of(found: Found, *, duplicate: bool) -> AppendResult:
    seq, stored = found
    return AppendResult(
        stored.stream, stored.command, stored.version, stored.envelopes(seq), duplicate
    )


class Claims:
    """Claims and their resolution against the events log (see the module docstring)."""

    def __init__(self, wire: Wire, names: Names, window_s: float, overlay: Overlay) -> None:
        self._wire = wire
        self._names = names
        self._window = window_s
        self._overlay = overlay  # rewritten messages (nats_rewrite): found as they read now

    async def claim(
        self,
        command: str,
        stream: str,
        lower: int,
        event_ids: list[str],
        loose: list[str],
        borrowed: dict[str, str],
    ) -> AppendResult | None:
        """None once the ids are ours to publish, or the first result of an earlier append
        (as a duplicate) that this one repeats. `loose`: the event ids not derived from
        `command`, each claimed on its own; `borrowed`: those of them caused by another
        command (id -> that command). Raises IdempotencyKeyReused, StoreError for clashing
        event ids, Unavailable."""
        wire, names = self._wire, self._names
        key = names.command_key(command)
        value = encode_command_claim(stream, lower)
        if not loose:  # the common case, every event id derived from the command id: inline
            future = await wire.send(key, value, _CREATE)
            try:
                wire.outcome(await future, key)
                return None
            except WrongLastSequence:
                return await self._take_command(command, stream, lower)
        keys = [key, *map(names.event_key, loose)]
        values = [value, *[encode_event_claim(command)] * len(loose)]
        futures = []
        for key, value in zip(keys, values, strict=True):  # all sent before any is awaited
            futures.append(await wire.send(key, value, _CREATE))
        outcomes = await self._settle(futures, keys)
        if not isinstance(outcomes[0], Ack):
            first = await self._take_command(command, stream, lower)
            if first is not None:
                return first
        owners: Owners = {}
        clashes = {}
        for eid, outcome in zip(loose, outcomes[1:], strict=True):
            if not isinstance(outcome, Ack):
                owner = await self._take_event(command, eid, owners)
                if owner is not None:
                    clashes[eid] = owner
        for eid, cause in borrowed.items():
            if eid not in clashes and await self._borrowed_state(eid, cause, owners) == "stored":
                clashes[eid] = cause
        return self._repeated(stream, event_ids, clashes, owners) if clashes else None

    async def known(
        self, command: str, stream: str, event_ids: list[str], borrowed: dict[str, str]
    ) -> AppendResult | None:
        """Lookups only: the first result this append repeats (by command or event ids)."""
        got, found = await self._resolve(command)
        if got is not None:
            claim = decode_command_claim(got.data)
            if claim is not None and claim.stream != stream and (found or not self._stale(got)):
                raise IdempotencyKeyReused(command, f"stream {claim.stream!r}")
            if found is not None:
                return result_of(found, duplicate=True)
        owners: Owners = {}
        stored = {}
        for eid in event_ids:
            entry = await self._get(self._names.event_key(eid))
            owner = None if entry is None else decode_event_claim(entry.data)
            if owner is not None and owner != command:
                if await self._owner_state(owner, eid, owners) == "stored":
                    stored[eid] = owner
        for eid, cause in borrowed.items():
            if eid not in stored and await self._borrowed_state(eid, cause, owners) == "stored":
                stored[eid] = cause
        return self._repeated(stream, event_ids, stored, owners) if stored else None

    async def locate(self, command: str) -> AppendResult | None:
        """The recorded result of a command id, or None."""
        _, found = await self._resolve(command)
        return None if found is None else result_of(found, duplicate=False)

    async def find(self, stream: str, lower: int, command: str) -> Found | None:
        """The command's message on the stream's subject after sequence `lower`."""
        subject = self._names.subject(stream)
        tail = walk(self._wire, self._names.stream, subject, lower + 1, 64)
        async with contextlib.aclosing(tail) as messages:
            async for got in messages:
                stored = decode_message(got.data)
                if stored is not None and stored.command == command and stored.stream == stream:
                    return got.seq, await self._overlay.apply_one(got.seq, stored)
        return None

    # -- the slow paths ----------------------------------------------------------

    async def _settle(
        self, futures: list[Pending], subjects: list[str]
    ) -> list[Ack | WrongLastSequence]:
        """Every claim's outcome; the first other failure is raised once all have settled."""
        outcomes: list[Ack | WrongLastSequence] = []
        failure: BaseException | None = None
        for future, subject in zip(futures, subjects, strict=True):
            try:
                outcomes.append(self._wire.outcome(await future, subject))
            except WrongLastSequence as exc:
                outcomes.append(exc)
            except (StoreError, Unavailable, NoStream) as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        return outcomes

    async def _take_command(self, command: str, stream: str, lower: int) -> AppendResult | None:
        """The command id is claimed already: its first result, or None once taken over."""
        key = self._names.command_key(command)
        for _ in range(_ATTEMPTS):
            got = await self._wire.direct_get(self._names.ids_stream, subject=key, last=True)
            claim = None if got is None or got.deleted else decode_command_claim(got.data)
            if got is not None and claim is not None:
                found = await self.find(claim.stream, claim.lower, command)
                stale = self._stale(got)  # its appenders have all given up
                if claim.stream != stream and (found is not None or not stale):
                    raise IdempotencyKeyReused(command, f"stream {claim.stream!r}")
                if found is not None:
                    return result_of(found, duplicate=True)
                if not stale:  # a message of an earlier claimant may yet land after its lower
                    lower = min(lower, claim.lower)
            value = encode_command_claim(stream, lower)
            expect = {EXPECT_LAST_SUBJECT_SEQ: str(0 if got is None else got.seq)}
            try:
                await self._wire.publish(key, value, expect)
                return None
            except WrongLastSequence:
                continue
        raise Unavailable(DEPENDENCY, f"too many appenders of command {command!r} at once")

    async def _take_event(self, command: str, eid: str, owners: Owners) -> str | None:
        """None once the event id is ours; the owning command when it is stored by another."""
        key = self._names.event_key(eid)
        for _ in range(_ATTEMPTS):
            got = await self._wire.direct_get(self._names.ids_stream, subject=key, last=True)
            owner = None if got is None or got.deleted else decode_event_claim(got.data)
            if owner == command:
                return None
            if owner is not None:
                state = await self._owner_state(owner, eid, owners)
                if state == "stored":
                    return owner
                if state == "busy":
                    raise Unavailable(
                        DEPENDENCY, f"event id {eid!r} is being appended by command {owner!r}"
                    )
            expect = {EXPECT_LAST_SUBJECT_SEQ: str(0 if got is None else got.seq)}
            try:
                await self._wire.publish(key, encode_event_claim(command), expect)
                return None
            except WrongLastSequence:
                continue
        raise Unavailable(DEPENDENCY, f"too many appenders of event id {eid!r} at once")

    async def _owner_state(self, owner: str, eid: str, owners: Owners) -> str:
        """ "stored" (the owner's message holds the event), "busy" (the owner may still be
        appending it) or "leftover" (the claim can be taken over)."""
        if owner not in owners:
            owners[owner] = await self._resolve(owner)
        got, found = owners[owner]
        if found is not None:
            return "stored" if eid in found[1].event_ids() else "leftover"
        if got is None:  # the owner's claim request failed: it never published
            return "leftover"
        return "leftover" if self._stale(got) else "busy"

    async def _borrowed_state(self, eid: str, cause: str, owners: Owners) -> str:
        """ "stored" when the causing command's message holds the event, "free" when the
        event id cannot be one of that command's own; raises when it is one of them and the
        command is not recorded (yet): only that command may append it, as the ids that
        derive from a command have no claims of their own."""
        state = await self._owner_state(cause, eid, owners)
        if state == "stored" or owners[cause][1] is not None:
            return "stored" if state == "stored" else "free"  # recorded without it: never will
        if derived_index(eid, cause, MAX_EVENTS) is None:
            return "free"
        if state == "busy":
            raise Unavailable(
                DEPENDENCY, f"event id {eid!r} is being appended by command {cause!r}"
            )
        raise StoreError(
            f"event id {eid!r} is derived from command {cause!r}, which is not recorded:"
            " only that command may append it"
        )

    def _stale(self, got: Got) -> bool:
        """Written longer than the duplicate window ago: its writer has given up.

        Compares the server's timestamp with this host's clock: a skew of more than
        half the window could take over a claim too early."""
        written = parse_time(got.time)
        return written > 0 and time.time() - written > self._window

    async def _resolve(self, command: str) -> tuple[Got | None, Found | None]:
        """The command's live claim entry, and its message if it was recorded."""
        got = await self._get(self._names.command_key(command))
        claim = None if got is None else decode_command_claim(got.data)
        if got is None or claim is None:
            return None, None
        return got, await self.find(claim.stream, claim.lower, command)

    async def _get(self, key: str) -> Got | None:
        got = await self._wire.direct_get(self._names.ids_stream, subject=key, last=True)
        return None if got is None or got.deleted else got

    def _repeated(
        self,
        stream: str,
        event_ids: list[str],
        stored: dict[str, str],
        owners: Owners,
    ) -> AppendResult:
        """The earlier append whose events these are exactly, as a duplicate; else StoreError."""

        def shape(owner: str) -> tuple[str, int]:
            found = owners[owner][1]
            assert found is not None  # every owner in `stored` was found recorded
            return found[1].stream, len(found[1].bodies)

        owner = owning_command(stream, event_ids, stored, shape)
        found = owners[owner][1] if owner is not None else None
        assert found is not None
        return result_of(found, duplicate=True)
