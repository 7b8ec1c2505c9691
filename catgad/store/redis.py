"""An event store in a Redis server: shared by any number of daemons, one atomic script per append.

Every append is one Lua script (redis_scripts.APPEND, loaded once, run with
EVALSHA) that in one atomic step checks the command id, the event ids and the
expected version, then stores the events and records the command. The keys and
scripts are in redis_scripts.

Layout, and why. Each event body is stored once, in one Redis Stream, the
global log, under the explicit ID ``<position>-0``; a stream's key is a List of
its events' positions (index i = version i + 1), so its version is LLEN.
  - read_all(after, limit) is XRANGE from ``<after + 1>-0`` with COUNT: a radix
    tree seek plus the entries returned, O(log n + limit), sent together with
    the EXISTS that tells whether any event was rewritten (below).
  - read(stream, after, limit) is one script: LRANGE of the positions, then an
    XRANGE per run of consecutive positions (one append's events are always a
    run). LRANGE walks from the nearer end of the list, and a list node holds
    hundreds of small integers, so this is O(limit) for the reads an engine
    does (from the start, or after a snapshot near the tail), plus one seek per
    run. A Redis Stream per stream would seek by version, but Redis 7.0
    preallocates a 4 KB node per stream (measured: 4.7 KB for a one-event
    stream against 0.45 KB for a list), and a store holds many short streams.
  - A command's events are consecutive positions, so its result is one XRANGE.
The global position is a counter the script advances; scripts run one at a
time, so positions are gapless and in commit order, and a reader never sees
position p + 1 before p (GAPLESS_GLOBAL_ORDER).

`catgad migrate` rewrites events in place (rewrite(); see redis_rewrite for
the why): their new bodies go to a hash beside the log, which every read lays
over the entries it returns, only in a store that has rewritten events.

Connections and failures. A BlockingConnectionPool of `pool_size` connections
(default 64) serves any number of concurrent callers. Appends issued in the
same turn of the event loop go out together, one pipeline of EVALSHAs on one
connection (at most `max_batch` per pipeline, `max_pipelines` in flight; see
redis_scripts.GroupSender): that is what lets a thousand concurrent appenders
share a few connections, and it sends 2-3 times more appends per second than
one EVALSHA per append. Sockets have bounded timeouts (`socket_timeout`,
`connect_timeout`, also the longest wait for a free connection), and a call is
sent again once, at once, only after a connection error (a pooled connection
that died with a server restart), never after a timeout. Sending an append
again is safe: each call carries a nonce kept in its command record, so an
append that ran before its reply was lost is recognised as the caller's own
(duplicate=False) rather than as a re-send. After a server restart the script
cache is empty: a NOSCRIPT reply (the script did not run) loads the script
and sends the call again. No redis-py exception leaves this store: connection
errors, timeouts, LOADING, READONLY and OOM become Unavailable (the caller may
retry with the same command id), anything else StoreError.

Durability is the server's: an append is acknowledged once Redis has applied
it, and it survives a Redis restart only if the server persists it
(``appendonly yes``; ``appendfsync always`` to lose nothing on a crash,
``everysec`` to lose up to a second). Replication is asynchronous; this store
does not WAIT for replicas. The capability DURABLE means surviving a restart
of the daemon, which it does whatever the server's configuration.

The server must not evict our keys: open() refuses a server whose
maxmemory-policy is allkeys-* (none of our keys has a TTL, so volatile-*
policies leave them alone); a full server refuses appends (Unavailable).

Redis versions: 7.0 or newer (or a compatible server such as Valkey), because
7.0 is the oldest release the suite runs against (Debian 12's 7.0.15, in CI).
Nothing here is newer than Redis 5.0 (Streams: XADD with explicit IDs, XRANGE
with COUNT; Lua semantics unchanged since), so 5.0 to 6.2 should work but are
not tested and not promised; older servers are refused at open(). Redis
Cluster is not supported: every append advances one counter and one log, so
all keys would have to live in one slot anyway.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from catgad.envelope import Envelope
from catgad.errors import ConcurrencyError, IdempotencyKeyReused, StoreError, Unavailable
from catgad.store import redis_rewrite
from catgad.store import redis_scripts as lua
from catgad.store.codec import (
    decode_event,
    decode_state,
    encode_events,
    encode_state,
    owning_command,
)
from catgad.store.protocol import AppendResult, Capability, Snapshot
from catgad.store.redis_coordination import RedisCoordination
from catgad.store.redis_scripts import NAME, GroupSender, mapped

__all__ = ["DEFAULT_PREFIX", "DEFAULT_URL", "MIN_SERVER", "RedisStore"]

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "catgad:"
MIN_SERVER = (5, 0)  # refused below this at open(); see the module docstring


class _Connected:
    """What an open store holds: the client, the append sender and the other scripts."""

    __slots__ = (
        "appends", "client", "command", "locate", "read_stream", "rewrite", "save_snapshot",
    )  # fmt: skip

    def __init__(self, client: aioredis.Redis, max_batch: int, max_pipelines: int) -> None:
        self.client = client
        self.appends = GroupSender(client, lua.APPEND, max_batch, max_pipelines)
        # redis-py's scripts run EVALSHA and, on NOSCRIPT, load themselves and run again
        self.command = client.register_script(lua.COMMAND)
        self.read_stream = client.register_script(lua.READ_STREAM)
        self.save_snapshot = client.register_script(lua.SAVE_SNAPSHOT)
        self.locate = client.register_script(redis_rewrite.LOCATE)
        self.rewrite = client.register_script(redis_rewrite.REWRITE)


class RedisStore(RedisCoordination):
    """The event store in a Redis server (see the module docstring for the layout)."""

    name = NAME
    capabilities = Capability.DURABLE | Capability.GAPLESS_GLOBAL_ORDER | Capability.MULTI_PROCESS

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        prefix: str = DEFAULT_PREFIX,
        pool_size: int = 64,
        socket_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        max_batch: int = 512,
        max_pipelines: int = 4,
    ) -> None:
        if not prefix:
            raise StoreError("the redis store needs a non-empty key prefix")
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise StoreError(f"a redis url starts with redis://, rediss:// or unix://: {url!r}")
        if (
            min(pool_size, max_batch, max_pipelines) < 1
            or min(socket_timeout, connect_timeout) <= 0
        ):
            raise StoreError("pool_size, max_batch, max_pipelines and the timeouts must be > 0")
        self.url = url
        self.prefix = prefix
        self._pool_size = pool_size
        self._socket_timeout = socket_timeout
        self._connect_timeout = connect_timeout
        self._max_batch = max_batch
        self._max_pipelines = min(max_pipelines, pool_size)
        self._on: _Connected | None = None
        p = prefix.encode()
        self._log, self._last = p + b"all", p + b"position"
        self._commands, self._event_ids = p + b"commands", p + b"event-ids"
        self._stream_prefix, self._snapshot_prefix = p + b"stream:", p + b"snapshot:"
        self._rewritten = p + b"rewritten"
        self._any_rewritten = lua.pack([b"EXISTS", self._rewritten])

    # -- lifecycle ---------------------------------------------------------------

    async def open(self) -> None:
        """Connect, check the server's version and load the append script."""
        if self._on is not None:
            return
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=self._pool_size,
            timeout=self._socket_timeout,  # waiting for a free connection is bounded too
            socket_timeout=self._socket_timeout,
            socket_connect_timeout=self._connect_timeout,
            # once, at once, and only after a connection error: see the module docstring
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        client = aioredis.Redis.from_pool(pool)
        try:
            info = await client.info("server")
            have = str(info.get("redis_version", "0"))
            if tuple(int(x) for x in have.split(".")[:2]) < MIN_SERVER:
                raise StoreError(f"redis {have} is too old: the store needs 5.0 or newer")
            # none of our keys has a TTL, so only an allkeys-* policy can evict them
            policy = str((await client.info("memory")).get("maxmemory_policy", "noeviction"))
            if policy.startswith("allkeys-"):
                raise StoreError(
                    f"redis evicts keys when full (maxmemory-policy {policy}), which would "
                    "lose events; set maxmemory-policy to noeviction"
                )
            await client.script_load(lua.APPEND)
            self._on = _Connected(client, self._max_batch, self._max_pipelines)
        except BaseException as exc:
            await client.aclose()
            if isinstance(exc, RedisError | OSError):
                raise mapped(exc) from exc
            raise

    async def close(self) -> None:
        """Answer the appends already queued, then disconnect; closing twice is fine."""
        on, self._on = self._on, None
        if on is None:
            return
        try:
            await on.appends.drain()
        finally:
            await on.client.aclose()

    async def ping(self) -> None:
        await _run(self._connected().client.ping())

    def _connected(self) -> _Connected:
        if self._on is None:
            raise Unavailable(NAME, "the store is not open")
        return self._on

    def _stream_key(self, stream: str) -> bytes:
        return self._stream_prefix + stream.encode()

    # -- appending ---------------------------------------------------------------

    async def append(
        self,
        stream: str,
        events: Sequence[Envelope],
        *,
        expected_version: int | None,
        command_id: str,
    ) -> AppendResult:
        records = encode_events(stream, events)
        on = self._connected()
        nonce = os.urandom(8).hex().encode()
        expected = b"" if expected_version is None else b"%d" % expected_version
        args = [
            self._stream_key(stream), self._log, self._last, self._commands, self._event_ids,
            self._rewritten, stream.encode(), expected, command_id.encode(), nonce,
        ]  # fmt: skip
        for r in records:
            args.append(r.id.encode())
            args.append(r.body)
        reply: list[Any] = await on.appends.submit(args)
        status = reply[0]
        if status == lua.APPENDED:
            version, first = int(reply[1]), int(reply[2])
            base = version - len(records) + 1
            stored = [
                decode_event(r.body, stream, base + i, first + i) for i, r in enumerate(records)
            ]
            return AppendResult(stream, command_id, version, stored, False)
        if status == lua.CONFLICT and expected_version is not None:
            raise ConcurrencyError(stream, expected_version, int(reply[1]))
        if status == lua.KNOWN_COMMAND:
            record = lua.Record(reply[1])
            if record.stream != stream:
                raise IdempotencyKeyReused(command_id, f"stream {record.stream!r}")
            # our own nonce: this call was sent again after its reply was lost; it ran once
            return lua.result_of(command_id, reply[1:], duplicate=record.nonce != nonce)
        if status == lua.KNOWN_EVENTS:
            return await self._resent(stream, [r.id for r in records], reply[1], reply[2])
        raise StoreError(f"redis: unexpected reply from the append script: {reply!r}")

    async def _resent(
        self, stream: str, ids: list[str], owners: list[bytes | None], raw: list[bytes | None]
    ) -> AppendResult:
        """The first result when these event ids are exactly an earlier append; else a clash."""
        stored = {i: o.decode() for i, o in zip(ids, owners, strict=True) if o is not None}
        shapes: dict[str, tuple[str, int]] = {}
        for cid, record in zip((o for o in owners if o is not None), raw, strict=True):
            if record is not None:
                parsed = lua.Record(record)
                shapes[cid.decode()] = (parsed.stream, parsed.count)
        owner = owning_command(stream, ids, stored, lambda o: shapes.get(o, ("", -1)))
        first = None if owner is None else await self._find(owner, duplicate=True)
        if first is None:  # records are written with their events, never without them
            raise StoreError(f"redis: the record of command {owner!r} is missing")
        return first

    # -- reading -----------------------------------------------------------------

    async def read(
        self, stream: str, *, after: int = 0, limit: int | None = None
    ) -> list[Envelope]:
        on = self._connected()
        if limit is not None and limit <= 0:
            return []
        start = max(after, 0)
        stop = -1 if limit is None else start + limit - 1
        keys = [self._stream_key(stream), self._log, self._rewritten]
        entries: list[Any] = await _run(on.read_stream(keys=keys, args=[start, stop]))
        return [lua.decode_entry(e) for e in entries]

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[Envelope]:
        on = self._connected()
        if limit <= 0:
            return []
        start = b"%d-0" % (max(after, 0) + 1)
        xrange = lua.pack([b"XRANGE", self._log, start, b"+", b"COUNT", b"%d" % limit])
        # one round trip, as a lone XRANGE: the log and whether anything was rewritten
        replies = await _run(lua.send_packed(on.client, xrange + self._any_rewritten, 2))
        for reply in replies:
            if isinstance(reply, BaseException):
                raise lua.mapped(reply)
        entries: list[Any] = replies[0]
        if replies[1] and entries:
            await self._overlay(on, entries)
        return [lua.decode_entry(e) for e in entries]

    async def _overlay(self, on: _Connected, entries: list[Any]) -> None:
        """Put the rewritten bodies into these raw log entries.

        Read after the entries, not with them: a rewrite in between only makes
        this read the later state of the same events, as entries never move.
        """
        fields = [e[0].partition(b"-")[0] for e in entries]
        bodies: list[bytes | None] = await _run(on.client.hmget(self._rewritten, fields))
        for entry, body in zip(entries, bodies, strict=True):
            if body is not None:
                entry[1][5] = body

    async def stream_version(self, stream: str) -> int:
        on = self._connected()
        return int(await _run(on.client.llen(self._stream_key(stream))))

    async def find_command(self, command_id: str) -> AppendResult | None:
        return await self._find(command_id, duplicate=False)

    async def _find(self, command_id: str, *, duplicate: bool) -> AppendResult | None:
        on = self._connected()
        keys = [self._commands, self._log, self._rewritten]
        reply: list[Any] | None = await _run(on.command(keys=keys, args=[command_id]))
        return None if reply is None else lua.result_of(command_id, reply, duplicate=duplicate)

    # -- rewriting (catgad migrate) ------------------------------------------------

    async def rewrite(self, events: Sequence[Envelope]) -> int:
        """Replace stored events' data and dataschemaversion, all or none (redis_rewrite)."""
        on = self._connected()
        return int(
            await _run(
                redis_rewrite.rewrite_events(
                    on.locate, on.rewrite, (self._log, self._rewritten), self._stream_key, events
                )
            )
        )

    # -- snapshots ---------------------------------------------------------------

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        state = encode_state(snapshot.state)
        on = self._connected()
        key = self._snapshot_prefix + snapshot.stream.encode()
        await _run(on.save_snapshot(keys=[key], args=[snapshot.version, state]))

    async def load_snapshot(self, stream: str) -> Snapshot | None:
        on = self._connected()
        key = self._snapshot_prefix + stream.encode()
        reply: list[bytes | None] = await _run(on.client.hmget(key, ["version", "state"]))
        version, state = reply
        if version is None or state is None:
            return None
        return Snapshot(stream, int(version), decode_state(state))


async def _run(pending: Awaitable[Any]) -> Any:
    """Await a redis-py call; its errors become ours."""
    try:
        return await pending
    except (RedisError, OSError) as exc:
        raise mapped(exc) from exc
