"""Rewriting stored events in the Redis store: what `catgad migrate` needs of it.

Why an overlay. A body lives in an entry of the global log, a Redis Stream,
and an entry cannot be changed (XADD only appends above the top ID: deleted
and added again, it would move to the end). So a rewrite records the new body
in a hash beside the log, ``P rewritten`` (position -> body), that every read
lays over the entries it returns (redis_scripts.OVERLAID; RedisStore.read_all).
No position, version or id moves, and appends never touch the hash, so they go
on meanwhile. Reads check for the hash in the same round trip, so a store never
migrated pays nothing; a migrated one holds each rewritten event's old body in
the log beside its new one.

Why two steps and no retry. New bodies are made by the codec every store
shares (codec.rewritten_body, which also checks the id); Lua's cjson would
re-encode numbers and key order. LOCATE reads the log entries at the events'
stream versions; REWRITE, one atomic script, checks that each is still there
(the same position and SHA-1 of the entry: only keys deleted and written again
could change it) before writing every new body, so a batch lands whole or not
at all. A new body is made from the log's entry, never from an earlier
rewrite's: a rewrite replaces data and dataschemaversion whole and nothing
else of a body ever changes, so what was read cannot go stale, and two
migrations at once need no compare-and-retry: the batch Redis runs last wins,
whole. The writes are HSETs only, and Redis refuses a script for lack of
memory only at its first write, so a full server cannot leave half a batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from redis.commands.core import AsyncScript

from catgad.envelope import Envelope
from catgad.errors import StoreError
from catgad.store.codec import rewrite_target, rewritten_body

__all__ = ["LOCATE", "REWRITE", "rewrite_events"]

# KEYS: 1 the global log, 2 rewritten bodies, then each event's stream list.
# ARGV: each event's version. Per event {position, body of its log entry}, or
# false when its stream has no such version (or the log lacks the entry).
LOCATE = """
local out = {}
for i = 1, #ARGV do
  local version = tonumber(ARGV[i])
  local position = version >= 1 and redis.call('LINDEX', KEYS[2 + i], version - 1)
  local entry = position and redis.call('XRANGE', KEYS[1], position .. '-0', position .. '-0')[1]
  if entry then out[i] = {position, entry[2][6]} else out[i] = false end
end
return out
"""

# KEYS: as LOCATE. ARGV: per event, its version, position, the SHA-1 of the
# log entry's body LOCATE read, and the new body. 0 when all were written;
# else the 1-based index of the first event not found as read, and nothing
# written.
REWRITE = """
local n = #KEYS - 2
for i = 1, n do
  local a = 4 * (i - 1)
  local position = ARGV[a + 2]
  if redis.call('LINDEX', KEYS[2 + i], tonumber(ARGV[a + 1]) - 1) ~= position then return i end
  local entry = redis.call('XRANGE', KEYS[1], position .. '-0', position .. '-0')[1]
  if not entry or redis.sha1hex(entry[2][6]) ~= ARGV[a + 3] then return i end
end
for i = 1, n do
  local a = 4 * (i - 1)
  redis.call('HSET', KEYS[2], ARGV[a + 2], ARGV[a + 4])
end
return 0
"""


async def rewrite_events(
    locate: AsyncScript,
    rewrite: AsyncScript,
    keys: tuple[bytes, bytes],
    stream_key: Callable[[str], bytes],
    events: Sequence[Envelope],
) -> int:
    """Replace the events' data and dataschemaversion, all or none; returns how many.

    `keys` are the log and the rewritten-bodies hash; `stream_key(stream)`
    names a stream's position list. Redis errors are the caller's to map.
    """
    if not events:
        return 0
    targets = [rewrite_target(e) for e in events]
    for event, (stream, version) in zip(events, targets, strict=True):
        if version < 1:  # LINDEX counts negative indexes from the end
            raise StoreError(f"event {event.id!r}: {stream!r} has no version {version}")
    script_keys = [*keys, *(stream_key(stream) for stream, _ in targets)]
    versions = [b"%d" % version for _, version in targets]
    found: list[list[bytes] | None] = await locate(keys=script_keys, args=versions)
    args: list[bytes] = []
    for event, (stream, version), at, arg in zip(events, targets, found, versions, strict=True):
        if at is None:
            raise StoreError(f"event {event.id!r}: {stream!r} has no version {version}")
        position, body = at
        read = hashlib.sha1(body, usedforsecurity=False).hexdigest().encode()
        args += (arg, position, read, rewritten_body(body, event))
    refused = int(await rewrite(keys=script_keys, args=args))
    if refused:
        event = events[refused - 1]
        raise StoreError(
            f"redis: event {event.id!r} is no longer stored as it was read a moment ago "
            "(were the store's keys deleted?); nothing was rewritten"
        )
    return len(events)
