"""Event ids derived from their command: the same command, retried, emits the same ids.

catgad's own writers (the engine, dead letters, replay marks) give the i-th
event of command C an id made from C and i alone: a version 8 UUID (RFC 9562)
whose last 74 bits are SHA-1("C/i") (namespaced) and whose first 48 are the
time of C when C is a time-ordered (version 7) UUID, as the ids catgad makes
for commands are, else the hash's. So the events of commands made one after
another get ids that sort together, and a store's unique index on event ids
grows at its end rather than at random pages. Events stored by earlier
versions of catgad carry uuid5(EVENT_NS, "C/i"); those are still recognised as
derived.

A store may lean on that: an event whose id is derived from the append's own
command id is unique exactly when the command id is, so it needs no record of
its own (the NATS store skips its event-id claim for such events; see
nats_claims).
"""

from __future__ import annotations

import hashlib
import uuid

EVENT_NS = uuid.UUID("6f0c1f8e-3b1e-4c47-9a0e-3d7c2f1b9a10")
_SEEDED = hashlib.sha1(EVENT_NS.bytes, usedforsecurity=False)


def _digest(command_id: str, index: int) -> bytearray:
    sha1 = _SEEDED.copy()  # already fed the namespace: a third of uuid.uuid5's time
    sha1.update(f"{command_id}/{index}".encode())
    return bytearray(sha1.digest()[:16])


def _time_of(command_id: str) -> bytes | None:
    """The 48-bit time field of a version 7 UUID in its canonical text form, else None."""
    if len(command_id) != 36 or command_id[14] != "7" or command_id[8] != "-":
        return None
    try:
        return bytes.fromhex(command_id[:8] + command_id[9:13])
    except ValueError:
        return None


def versioned(raw: bytearray, version: int) -> bytearray:
    """`raw` (16 bytes) marked as a UUID of `version`, RFC 9562 variant."""
    raw[6] = (raw[6] & 0x0F) | version << 4
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw


def uuid_text(raw: bytes | bytearray) -> str:
    """The canonical text of a UUID's 16 bytes (what str(uuid.UUID(bytes=raw)) gives, faster)."""
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _derived(command_id: str, index: int) -> bytearray:
    raw = _digest(command_id, index)
    stamp = _time_of(command_id)
    if stamp is not None:
        raw[:6] = stamp
    return versioned(raw, 8)


def _legacy(command_id: str, index: int) -> bytearray:
    """uuid5(EVENT_NS, "C/i"), the derived ids stored before the time-ordered ones."""
    return versioned(_digest(command_id, index), 5)


def event_id(command_id: str, index: int) -> str:
    """The id of the `index`-th event of command `command_id` (see the module docstring)."""
    return uuid_text(_derived(command_id, index))


def derived_index(event: str, command_id: str, limit: int) -> int | None:
    """The index i < limit whose derived id (either scheme) is `event`, or None.

    A search of up to `limit` hashes (about half a microsecond each); callers
    use it only off the hot path."""
    try:
        wanted = uuid.UUID(event).bytes
    except ValueError:
        return None  # not a UUID: derived from nothing
    derive = {8: _derived, 5: _legacy}.get(wanted[6] >> 4)
    if derive is None:
        return None
    for index in range(limit):
        if derive(command_id, index) == wanted:
            return index
    return None
