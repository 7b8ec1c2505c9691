"""The Redis store's Lua scripts: their text, the grouped sending of appends, their replies.

Keys, all under the store's prefix P (default ``catgad:``):

    P all            Stream  global log: entry <position>-0 = {s: stream, v: version, b: body}
    P position       String  the last position handed out (the global counter)
    P stream:<id>    List    the positions of a stream's events; index i holds version i + 1
    P commands       Hash    command id -> "first position:count:version:nonce:stream"
    P event-ids      Hash    event id -> the command id that stored it
    P snapshot:<id>  Hash    {version, state}
    P rewritten      Hash    position -> the event's body since `catgad migrate` rewrote it

Stream entries cannot be changed, so `P rewritten` (written by redis_rewrite)
is laid over the log by every read: `overlaid` below, and RedisStore.read_all.

A script runs atomically in Redis, so each one's checks and writes are a
single step for every other client. The append script does every check
before its first write: a refused append (version, known command, known event
id) writes nothing. Its first write is an XADD (or, for an append without
events, the HSET of its command record); Redis refuses a script for lack of
memory only at its first write (later writes of a script that has written are
let through, to keep it atomic), so running out of memory cannot leave half
an append either. Numbers cross into Lua as doubles, which print as integers
below 1e14: far more positions than one Redis server can hold.

No redis-py exception leaves the store: `mapped` converts them at the boundary.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from catgad.envelope import Envelope
from catgad.errors import StoreError, Unavailable
from catgad.store.codec import decode_event
from catgad.store.protocol import AppendResult

NAME = "redis"

# What the append script answers, as the first element of its reply.
APPENDED = 0  # {0, version, first position}
KNOWN_COMMAND = 1  # {1, record, entries}: the command id was recorded before
KNOWN_EVENTS = 2  # {2, owner per event id (nil: new), record per owner}
CONFLICT = 3  # {3, actual version}

APPEND_KEYS = 6  # how many of the append script's arguments are keys

# Log entries as they read since any rewrite: an entry's fields are always
# {s, stream, v, version, b, body}, so the body is field 6.
OVERLAID = """
local function overlaid(entries, rewritten)
  if #entries == 0 or redis.call('EXISTS', rewritten) == 0 then return entries end
  for i = 1, #entries do
    local body = redis.call('HGET', rewritten, string.match(entries[i][1], '^%d+'))
    if body then entries[i][2][6] = body end
  end
  return entries
end
"""

# A command record's events: it is shared by the append and the command scripts.
_ENTRIES_OF_RECORD = (
    OVERLAID
    + """
local function entries_of(log, rewritten, record)
  local first, count = string.match(record, '^(%d+):(%d+):')
  first, count = tonumber(first), tonumber(count)
  if count == 0 then return {} end
  return overlaid(redis.call('XRANGE', log, first .. '-0', (first + count - 1) .. '-0'), rewritten)
end
"""
)

# KEYS (APPEND_KEYS of them): 1 the stream's position list, 2 the global log,
#       3 the last position, 4 command records, 5 event-id owners, 6 rewritten bodies
# ARGV: 1 stream, 2 expected version ('' = any), 3 command id, 4 nonce,
#       then one (event id, body) pair per event
APPEND = (
    _ENTRIES_OF_RECORD
    + """
local stream, cid = ARGV[1], ARGV[3]
local record = redis.call('HGET', KEYS[4], cid)
if record then
  return {1, record, entries_of(KEYS[2], KEYS[6], record)}
end
local n = (#ARGV - 4) / 2
-- event ids already stored: a re-send of an earlier append, or a clash;
-- the caller tells which from the owners' records (codec.owning_command)
local owners, seen = {}, false
for i = 1, n do
  local owner = redis.call('HGET', KEYS[5], ARGV[3 + 2 * i])
  owners[i] = owner
  if owner then seen = true end
end
if seen then
  local records = {}
  for i = 1, n do
    if owners[i] then records[#records + 1] = redis.call('HGET', KEYS[4], owners[i]) end
  end
  return {2, owners, records}
end
local version = redis.call('LLEN', KEYS[1])
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= version then
  return {3, version}
end
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
-- the XADDs come first: if the log's top entry is somehow ahead of the
-- counter, the first XADD fails and nothing at all has been written
for i = 1, n do
  redis.call('XADD', KEYS[2], (last + i) .. '-0',
             's', stream, 'v', version + i, 'b', ARGV[4 + 2 * i])
end
for i = 1, n do
  redis.call('RPUSH', KEYS[1], last + i)
  redis.call('HSET', KEYS[5], ARGV[3 + 2 * i], cid)
end
local first = 0
if n > 0 then
  redis.call('SET', KEYS[3], last + n)
  first = last + 1
end
redis.call('HSET', KEYS[4], cid,
           first .. ':' .. n .. ':' .. (version + n) .. ':' .. ARGV[4] .. ':' .. stream)
return {0, version + n, first}
"""
)

# KEYS: 1 command records, 2 the global log, 3 rewritten bodies. ARGV: 1 command id.
COMMAND = (
    _ENTRIES_OF_RECORD
    + """
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return false end
return {record, entries_of(KEYS[2], KEYS[3], record)}
"""
)

# KEYS: 1 the stream's position list, 2 the global log, 3 rewritten bodies.
# ARGV: 1, 2 the LRANGE bounds. Runs of consecutive positions (one append's
# events, or a stream written alone) are fetched with one XRANGE each.
READ_STREAM = (
    OVERLAID
    + """
local positions = redis.call('LRANGE', KEYS[1], ARGV[1], ARGV[2])
local out, i, n = {}, 1, #positions
while i <= n do
  local first = tonumber(positions[i])
  local j = i
  while j < n and tonumber(positions[j + 1]) == first + (j + 1 - i) do j = j + 1 end
  local entries = redis.call('XRANGE', KEYS[2], first .. '-0', (first + j - i) .. '-0')
  for k = 1, #entries do out[#out + 1] = entries[k] end
  i = j + 1
end
return overlaid(out, KEYS[3])
"""
)

# KEYS: 1 the snapshot hash. ARGV: 1 version, 2 state.
# A late, older snapshot (a slow writer) must not replace a newer one.
SAVE_SNAPSHOT = """
local current = redis.call('HGET', KEYS[1], 'version')
if current and tonumber(current) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'state', ARGV[2])
return 1
"""


class Record:
    """A command's record, as the append script wrote it."""

    __slots__ = ("count", "first", "nonce", "stream", "version")

    def __init__(self, raw: bytes) -> None:
        try:
            first, count, version, nonce, stream = raw.split(b":", 4)
            self.first, self.count, self.version = int(first), int(count), int(version)
        except ValueError:
            raise StoreError(f"redis: a command record is malformed: {raw[:80]!r}") from None
        self.nonce = nonce
        self.stream = stream.decode()


def pack(args: list[bytes]) -> bytes:
    """One command in the Redis protocol (RESP), from arguments that are bytes already."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(parts)


def position_of(entry_id: bytes) -> int:
    return int(entry_id.partition(b"-")[0])


def decode_entry(entry: list[Any]) -> Envelope:
    """An envelope from a log entry a script returns: [id, [s, stream, v, version, b, body]]."""
    entry_id, fields = entry
    return decode_event(fields[5], fields[1].decode(), int(fields[3]), position_of(entry_id))


def result_of(command_id: str, reply: list[Any], *, duplicate: bool) -> AppendResult:
    """The AppendResult of a [record, entries] pair from the append or command script."""
    record = Record(reply[0])
    events = [decode_entry(e) for e in reply[1]]
    if len(events) != record.count:
        raise StoreError(f"redis: events of command {command_id!r} are missing from the log")
    return AppendResult(record.stream, command_id, record.version, events, duplicate)


def mapped(exc: BaseException) -> StoreError | Unavailable:
    """Our error for a redis-py one; a redis-py exception never leaves this module."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError):
        return Unavailable(NAME, str(exc) or type(exc).__name__)
    if isinstance(exc, OutOfMemoryError | ReadOnlyError):
        return Unavailable(NAME, str(exc))  # a full or demoted server: retrying later may help
    return StoreError(f"redis: {exc}")


class _Job:
    __slots__ = ("command", "future")

    def __init__(self, command: bytes, future: asyncio.Future[Any]) -> None:
        self.command = command  # EVALSHA, packed
        self.future = future


class GroupSender:
    """Sends the append calls queued in one turn of the event loop as one pipeline.

    A caller awaits its own future; each reply (or error) goes to its caller
    alone. The replies of a pipeline are resolved together, so their callers
    wake up together and their next appends make up the next pipeline.
    """

    def __init__(
        self, client: aioredis.Redis, script: str, max_batch: int, max_pipelines: int
    ) -> None:
        self._client = client
        self._script = script
        # the SHA1 of the text: the same before and after the server forgets the script
        sha = client.register_script(script).sha.encode()
        self._head = [b"EVALSHA", sha, b"%d" % APPEND_KEYS]
        self._max_batch = max_batch
        self._max_pipelines = max_pipelines
        self._queue: list[_Job] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, keys_and_args: list[bytes]) -> asyncio.Future[Any]:
        """The future reply of EVALSHA with these APPEND_KEYS keys and then arguments."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Job(pack([*self._head, *keys_and_args]), future))
        self._schedule()
        return future

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            # call_soon: every caller running in this turn of the loop queues first
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        loop = asyncio.get_running_loop()
        while self._queue and len(self._tasks) < self._max_pipelines:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            task = loop.create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._queue:
            self._schedule()

    async def _send(self, batch: list[_Job]) -> None:
        try:
            pending = batch
            for _attempt in range(2):  # the second time only after loading the script again
                replies = await self._pipeline(pending)
                missing: list[_Job] = []
                for job, reply in zip(pending, replies, strict=True):
                    if isinstance(reply, NoScriptError):
                        missing.append(job)  # it did not run: sending it again is safe
                    elif isinstance(reply, BaseException):
                        _settle(job, exc=mapped(reply))
                    else:
                        _settle(job, value=reply)
                if not missing:
                    return
                await self._client.script_load(self._script)  # the same SHA1, known again
                pending = missing
            for job in pending:
                _settle(job, exc=StoreError("redis: the append script cannot be loaded"))
        except (RedisError, OSError) as exc:
            error = mapped(exc)  # the outcome is unknown: retrying with the command id is safe
            for job in batch:
                _settle(job, exc=error)
        except BaseException:  # cancelled (the loop is ending), or a bug: nobody waits forever
            for job in batch:
                _settle(job, exc=Unavailable(NAME, "the append was interrupted"))
            raise

    async def _pipeline(self, jobs: list[_Job]) -> list[Any]:
        """Each job's reply, or the ResponseError it got, in order.

        The commands are packed here rather than by redis-py's Pipeline, whose
        pure-Python packer costs more than anything else per append.
        """
        return await send_packed(self._client, b"".join([job.command for job in jobs]), len(jobs))

    async def drain(self) -> None:
        """Wait until everything queued so far has been answered."""
        while self._queue or self._tasks:
            if self._tasks:
                await asyncio.wait(set(self._tasks))
            else:
                await asyncio.sleep(0)


async def send_packed(client: aioredis.Redis, payload: bytes, count: int) -> list[Any]:
    """The replies to `count` packed commands sent in one write, each a ResponseError if it failed.

    Replies are read raw, without redis-py's per-command parsing. Like
    redis-py's own commands, commands lost to a connection error are sent once
    more on a fresh connection (the appends are safe to send again: see the
    nonce in RedisStore; everything else sent this way only reads).
    """
    pool = client.connection_pool
    for attempt in (1, 2):
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]  # untyped upstream
        try:
            await conn.send_packed_command(payload, check_health=False)
            replies: list[Any] = []
            for _ in range(count):
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:  # this command's error: the others still count
                    replies.append(exc)
            return replies
        except RedisConnectionError:
            await conn.disconnect()
            if attempt == 2:
                raise
        except BaseException:  # unread replies must not reach the connection's next user
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)
    raise AssertionError("unreachable")


def _settle(job: _Job, *, value: Any = None, exc: BaseException | None = None) -> None:
    if job.future.done():  # the caller was cancelled; the append stands regardless
        return
    if exc is not None:
        job.future.set_exception(exc)
    else:
        job.future.set_result(value)
