"""A read model in Redis hashes; rows, indexes and checkpoint change in one Lua script.

Each row is a hash of JSON-encoded column values; indexed columns keep a
sorted set per value, so `?column=value` is one ZRANGEBYLEX in key order.
The layout and the scripts are in redis_lua. A server that cannot be reached
is Unavailable (the runner waits and retries), never a lost or doubled event:
the checkpoint moves inside the same script as the rows. Queries run as
scripts too, so a swap is never seen half done. Redis 5.0 or newer; not
Redis Cluster (keys are computed inside the scripts).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Sequence
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from catgad.errors import Fenced, TargetError, Unavailable
from catgad.observability.logs import get_logger
from catgad.projections.mapping import Op
from catgad.projections.model import KEY_COLUMN, ProjectionDef
from catgad.projections.targets import redis_lua as lua
from catgad.projections.targets.protocol import (
    Meta,
    Page,
    ProjectionTarget,
    Row,
    State,
    decode_cursor,
    page_of,
)

log = get_logger("catgad.projections")
_KINDS = {"upsert": "p", "update": "u", "delete": "d"}
_SCAN = 1000


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisConnection:
    """One client per server URL, shared by the projections that use it."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=min(timeout, 3.0)
        )
        self.scripts = {
            name: self.client.register_script(getattr(lua, name))
            for name in ("INIT", "META", "SET_STATE", "APPLY", "ROWS", "FIND", "BEGIN_REBUILD",
                         "SWAP", "ABORT")
        }  # fmt: skip
        self.users = 0

    async def run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self.scripts[script](keys=keys, args=args)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise Unavailable(
                f"redis read model {self.where}", str(exc) or type(exc).__name__
            ) from None
        except ResponseError as exc:
            text = str(exc)
            if text.startswith(("LOADING", "BUSY", "READONLY", "OOM", "MASTERDOWN")):
                raise Unavailable(f"redis read model {self.where}", text) from None
            raise TargetError(f"redis:{self.where}", text) from None
        except RedisError as exc:
            raise Unavailable(f"redis read model {self.where}", str(exc)) from None

    @property
    def where(self) -> str:
        return self.url.split("@")[-1]

    async def close(self) -> None:
        await self.client.aclose()


class RedisTarget:
    """A projection's rows as hashes under `<prefix><table>:`."""

    kind = "redis"

    def __init__(self, projection: ProjectionDef, conn: RedisConnection, *, shadow: bool = False):
        self.projection = projection
        self.name = projection.name
        self.conn = conn
        self.shadow = shadow
        target = projection.target
        self.base = f"{target.prefix}{target.table}:"
        self.meta_key = self.base + "meta"
        self.trash = self.base + "trash"
        self.columns = projection.columns
        self._indexed = _dumps(projection.indexed)
        self._defaults = _dumps({k: _dumps(v) for k, v in projection.defaults().items()})
        self._cleaners: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        await self.conn.run("INIT", [self.meta_key], [])
        self._clean_trash()

    async def close(self) -> None:
        for task in list(self._cleaners):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._cleaners, return_exceptions=True)

    async def meta(self) -> Meta:
        pos, state, error, rpos = await self.conn.run("META", [self.meta_key], [])
        return Meta(
            int(pos or 0),
            cast(State, (state or b"running").decode()),
            error.decode() if error else None,
            None if rpos is None else int(rpos),
        )

    async def set_state(self, state: State, error: str | None = None) -> None:
        await self.conn.run("SET_STATE", [self.meta_key], [state, error or ""])

    async def apply(self, ops: Sequence[Op], *, after: int, position: int) -> None:
        encoded = [
            [_KINDS[op.kind], op.key, {k: _dumps(v) for k, v in op.fields.items()}] for op in ops
        ]
        done, at = await self.conn.run(
            "APPLY",
            [self.meta_key],
            [self.base, self._mode, after, position, self._indexed, self._defaults,
             orjson.dumps(encoded)],
        )  # fmt: skip
        if not done:
            raise Fenced(self.name, after, int(at) if at else None)

    @property
    def _mode(self) -> str:
        return "s" if self.shadow else "l"

    def _decode(self, flat: list[bytes]) -> Row:
        raw = {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}
        return {
            name: orjson.loads(raw[name]) if name in raw else column.default
            for name, column in self.columns.items()
        }

    async def rows(self, keys: Collection[str]) -> dict[str, Row | None]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Row | None] = {}
        for i in range(0, len(wanted), 1000):
            chunk = wanted[i : i + 1000]
            reply = await self.conn.run("ROWS", [self.meta_key], [self.base, self._mode, *chunk])
            for key, flat in zip(chunk, reply, strict=True):
                found[key] = None if flat is None else self._decode(flat)
        return found

    async def get(self, key: str) -> Row | None:
        (flat,) = await self.conn.run("ROWS", [self.meta_key], [self.base, "l", key])
        return None if flat is None else {KEY_COLUMN: key, **self._decode(flat)}

    async def find(
        self, column: str | None, value: Any, *, limit: int, cursor: str | None = None
    ) -> Page:
        zset = "k" if column is None else f"i:{column}:{_dumps(value)}"
        low = "-" if cursor is None else "(" + decode_cursor(cursor)
        reply = await self.conn.run("FIND", [self.meta_key], [self.base, zset, low, limit + 1])
        rows = [{KEY_COLUMN: key.decode(), **self._decode(flat)} for key, flat in reply]
        return page_of(rows, limit)

    async def begin_rebuild(self) -> None:
        await self.conn.run("BEGIN_REBUILD", [self.meta_key, self.trash], [])
        self._clean_trash()

    def shadow_target(self) -> ProjectionTarget:
        return RedisTarget(self.projection, self.conn, shadow=True)

    async def swap(self, *, after: int) -> None:
        done, at = await self.conn.run("SWAP", [self.meta_key, self.trash], [after])
        if not done:
            raise Fenced(self.name, after, int(at) if at else None)
        self._clean_trash()

    async def abort_rebuild(self) -> None:
        await self.conn.run("ABORT", [self.meta_key, self.trash], [])
        self._clean_trash()

    def _clean_trash(self) -> None:
        task = asyncio.create_task(self._empty_trash(), name=f"redis-trash:{self.name}")
        self._cleaners.add(task)
        task.add_done_callback(self._cleaners.discard)

    async def _empty_trash(self) -> None:
        """Delete the generations in the trash, key by key (UNLINK: freed in the background)."""
        client = self.conn.client
        try:
            for gen in await client.smembers(self.trash):
                label = gen.decode() if isinstance(gen, bytes) else str(gen)
                pattern = _glob_escape(f"{self.base}{label}:") + "*"
                async for batch in _scan_batches(client, pattern):
                    await client.unlink(*batch)
                await client.srem(self.trash, gen)
        except (RedisError, OSError) as exc:  # left in the trash: emptied at the next open
            log.warning("could not delete an old read model generation", projection=self.name,
                        error=str(exc))  # fmt: skip


async def _scan_batches(client: aioredis.Redis, pattern: str) -> Any:
    batch: list[bytes] = []
    async for key in client.scan_iter(match=pattern, count=_SCAN):
        batch.append(key)
        if len(batch) >= _SCAN:
            yield batch
            batch = []
    if batch:
        yield batch
