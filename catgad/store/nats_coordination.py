"""Leases and checkpoints of the NATS store, in a KV bucket every daemon sharing the stream uses.

Keys of the bucket `<stream>_coord` (a JetStream KV bucket like the store's
other two, created with them, one value per key), readable with `nats kv`:

    l.<token(name)>  a lease: {"owner": owner id, "ttl": seconds}
    p.<token(name)>  a checkpoint: the position in decimal
    now              the clock tick (below); its value means nothing

Every change is a compare-and-set on the key's last sequence (the entry's
revision): create-only (expected last subject sequence 0, or that of the
delete marker a release left) to take a free lease, expected = the sequence
read to renew, take over or release one, and to raise a checkpoint. A
refused write changed nothing and the operation starts again from a fresh
read; after _ATTEMPTS refusals in a row it gives up as Unavailable.

Expiry, by the server's clock. NATS 2.9 has no per-message TTL (2.11+) and
no request that tells the server's time, but JetStream stamps every stored
message with its clock (`Nats-Time-Stamp`, read back by a direct get). A
lease expires at the stamp of its last write (take or renew) + its ttl. To
compare that with "now", the store writes a message to `now` and reads the
stamp of the last one back: a server time taken after the lease was read and
before the compare-and-set that would take it over. A lease is taken over
only if that time is past its expiry and the compare-and-set then proves it
was not renewed meanwhile, so no daemon's clock is compared with another's.

Clock assumptions: the stamps of one bucket come from one clock, that of the
server leading its stream (followers store the leader's stamps). So the
rules hold on a single server and within one leadership; after a leader
change, leases expire early or late by the skew between the two servers'
clocks (keep them NTP-synced), and a wall clock stepped back (forward)
delays (hastens) expiry by the step, as with SQLite's clock. A `now` read
on a lagging replica is older, never newer: a lease may look held a little
longer, never free too early. Stamps keep microseconds here.

Cost: renewing, taking a free lease and saving a checkpoint take two
requests (read, write); another owner's lease needs the clock, two more:
lease_owner takes three, a take-over four. Every request is bounded by the
store's `timeout`, errors are mapped by nats_wire (no nats-py exception
leaves), and a bucket gone missing is re-created by the store's _run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import orjson

from catgad.errors import StoreError, Unavailable
from catgad.store.nats_codec import EXPECT_LAST_SUBJECT_SEQ, KV_OPERATION, Names, parse_time, token
from catgad.store.nats_wire import DEPENDENCY, Got, Wire, WrongLastSequence

if TYPE_CHECKING:
    from catgad.store.nats_claims import Claims

T = TypeVar("T")
_ATTEMPTS = 20  # compare-and-set rounds on one key before giving up as Unavailable


def _lease_key(names: Names, name: str) -> str:
    return f"$KV.{names.coord_bucket}.l.{token(name)}"


def _checkpoint_key(names: Names, name: str) -> str:
    return f"$KV.{names.coord_bucket}.p.{token(name)}"


def _expect(got: Got | None) -> dict[str, str]:
    """Headers for a write that succeeds only if `got` is still the key's last message."""
    return {EXPECT_LAST_SUBJECT_SEQ: str(0 if got is None else got.seq)}


def _stamp(got: Got) -> float:
    """The server's time (unix seconds) when `got` was stored."""
    stamp = parse_time(got.time)
    if stamp <= 0:
        raise StoreError(f"JetStream gave no time stamp for {got.subject} (seq {got.seq})")
    return stamp


def _lease(got: Got | None) -> tuple[str, float] | None:
    """(owner, ttl) of a lease entry; None when there is none (never taken, or released)."""
    if got is None or got.deleted:
        return None
    try:
        doc = orjson.loads(got.data)
        return str(doc["owner"]), float(doc["ttl"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"{got.subject} does not hold a catgad lease: {got.data!r}") from exc


def _position(got: Got | None) -> int:
    if got is None or got.deleted:
        return 0
    try:
        return int(got.data)
    except ValueError as exc:
        raise StoreError(f"{got.subject} does not hold a checkpoint: {got.data!r}") from exc


class NATSCoordination:
    """The Coordination methods of NATSStore, which mixes this in and owns the connection."""

    _names: Names

    if TYPE_CHECKING:

        async def _run(self, operation: Callable[[Wire, Claims], Awaitable[T]]) -> T: ...

    # -- leases ------------------------------------------------------------------------

    async def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        value = orjson.dumps({"owner": owner, "ttl": float(ttl)})
        return await self._run(lambda wire, _: self._acquire(wire, name, owner, value))

    async def _acquire(self, wire: Wire, name: str, owner: str, value: bytes) -> bool:
        key = _lease_key(self._names, name)
        for _ in range(_ATTEMPTS):
            got = await self._get(wire, key)
            held = _lease(got)
            if held is not None and held[0] != owner:
                assert got is not None
                if await self._now(wire) < _stamp(got) + held[1]:
                    return False  # another owner's lease stands
            try:  # free, ours, or expired: unless the entry changed since we read it
                await wire.publish(key, value, _expect(got))
                return True
            except WrongLastSequence:
                continue
        raise Unavailable(DEPENDENCY, f"too many daemons contend for lease {name!r}")

    async def release_lease(self, name: str, owner: str) -> None:
        await self._run(lambda wire, _: self._release(wire, name, owner))

    async def _release(self, wire: Wire, name: str, owner: str) -> None:
        key = _lease_key(self._names, name)
        for _ in range(_ATTEMPTS):
            got = await self._get(wire, key)
            held = _lease(got)
            if held is None or held[0] != owner:
                return  # not ours (any more): nothing to do
            try:  # a KV delete marker, only over the entry we read
                await wire.publish(key, b"", {**_expect(got), KV_OPERATION: "DEL"})
                return
            except WrongLastSequence:
                continue
        raise Unavailable(DEPENDENCY, f"too many daemons contend for lease {name!r}")

    async def lease_owner(self, name: str) -> str | None:
        return await self._run(lambda wire, _: self._owner(wire, name))

    async def _owner(self, wire: Wire, name: str) -> str | None:
        got = await self._get(wire, _lease_key(self._names, name))
        held = _lease(got)
        if held is None:
            return None
        assert got is not None
        return held[0] if await self._now(wire) < _stamp(got) + held[1] else None

    async def _now(self, wire: Wire) -> float:
        """The server's current time: the stamp of a message written to `now` just now."""
        key = f"$KV.{self._names.coord_bucket}.now"
        await wire.publish(key, b"", {})
        got = await self._get(wire, key)  # ours, or a later tick that replaced it
        if got is None:
            raise Unavailable(DEPENDENCY, f"the clock tick on {key} vanished")
        return _stamp(got)

    # -- checkpoints -------------------------------------------------------------------

    async def load_checkpoint(self, name: str) -> int:
        key = _checkpoint_key(self._names, name)
        return await self._run(lambda wire, _: self._load(wire, key))

    async def _load(self, wire: Wire, key: str) -> int:
        return _position(await self._get(wire, key))

    async def save_checkpoint(self, name: str, position: int) -> None:
        await self._run(lambda wire, _: self._save(wire, name, int(position)))

    async def _save(self, wire: Wire, name: str, position: int) -> None:
        key = _checkpoint_key(self._names, name)
        for _ in range(_ATTEMPTS):
            got = await self._get(wire, key)
            if got is not None and _position(got) >= position:
                return  # never backwards
            try:
                await wire.publish(key, str(position).encode(), _expect(got))
                return
            except WrongLastSequence:
                continue
        raise Unavailable(DEPENDENCY, f"too many daemons save checkpoint {name!r} at once")

    async def reset_checkpoint(self, name: str, position: int = 0) -> None:
        key = _checkpoint_key(self._names, name)
        value = str(int(position)).encode()
        await self._run(lambda wire, _: wire.publish(key, value, {}))

    async def _get(self, wire: Wire, key: str) -> Got | None:
        return await wire.direct_get(self._names.coord_stream, subject=key, last=True)
