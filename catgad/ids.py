"""Event ids derived from their command: the same command, retried, emits the same ids.

catgad's own writers (the engine, dead letters, replay marks) give the i-th
event of command C the id uuid5(EVENT_NS, "C/i"). A store may lean on that: an
event whose id is derived from the append's own command id is unique exactly
when the command id is, so it needs no record of its own (the NATS store
skips its event-id claim for such events; see nats_claims).
"""

from __future__ import annotations

import hashlib
import uuid

EVENT_NS = uuid.UUID("6f0c1f8e-3b1e-4c47-9a0e-3d7c2f1b9a10")
_SEEDED = hashlib.sha1(EVENT_NS.bytes, usedforsecurity=False)


def _digest(command_id: str, index: int) -> bytearray:
    sha1 = _SEEDED.copy()  # already fed the namespace: a third of uuid.uuid5's time
    sha1.update(f"{command_id}/{index}".encode())
    digest = bytearray(sha1.digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return digest


def event_id(command_id: str, index: int) -> str:
    """uuid5(EVENT_NS, "command id/index"), as uuid.uuid5 computes it."""
    h = _digest(command_id, index).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def derived_index(event: str, command_id: str, limit: int) -> int | None:
    """The index i < limit with event_id(command_id, i) == event, or None.

    A search of up to `limit` hashes (about half a microsecond each); callers
    use it only off the hot path."""
    try:
        wanted = uuid.UUID(event).bytes
    except ValueError:
        return None  # not a UUID: derived from nothing
    if wanted[6] >> 4 != 5:
        return None
    for index in range(limit):
        if _digest(command_id, index) == wanted:
            return index
    return None
