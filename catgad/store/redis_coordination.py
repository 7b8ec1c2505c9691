"""Leases and checkpoints in the Redis store's server, for every daemon that shares its prefix.

Keys, under the store's prefix P next to those of redis_scripts:

    P lease:<name>       String  the holder's owner id, with a PX expiry
    P checkpoint:<name>  String  the saved position, in decimal

A lease's expiry is the key's own: SET ... PX makes the server drop the key
`ttl` after the write, measured by the server's clock (a key past its expiry
reads as missing, also inside a script), so no daemon's clock is compared
with another's. The TTL is rounded up to whole milliseconds, so the server
never expires a lease before the holder's own deadline (catgad.store.lease).
Taking or renewing is one script (GET, then SET ... PX if the key is missing
or already ours), releasing another (compare-and-delete), and saving a
checkpoint a third (SET only when higher): each is atomic, so two daemons
can never both win a lease nor move a checkpoint backwards. Reading an owner
or a checkpoint is a plain GET, and a reset a plain SET.

Lease keys are the only keys of the store with a TTL: a server with a
volatile-* maxmemory-policy may evict them when full, which frees a lease
early. Run the server with noeviction, as the store's module docstring asks.

The scripts are redis-py Scripts, like the store's own (EVALSHA, loaded
again after NOSCRIPT); they go through the store's pool, so its timeouts and
its one retry after a connection error apply. Each call is safe to send
again: a renewal by the same owner, a compare-and-delete and a max are
idempotent. No redis-py exception leaves this module (redis_scripts.mapped).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from catgad.errors import StoreError
from catgad.store.redis_scripts import mapped

if TYPE_CHECKING:
    from catgad.store.redis import _Connected

# KEYS: 1 the lease. ARGV: 1 owner, 2 ttl in milliseconds. 1 when now held, else 0.
ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: 1 the lease. ARGV: 1 owner. 1 when released, 0 when it was not ours.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: 1 the checkpoint. ARGV: 1 position. 1 when moved forward, else 0.
# Numbers are doubles in Lua: exact below 2^53, far past any position.
SAVE = """
local saved = redis.call('GET', KEYS[1])
if saved and tonumber(saved) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


class _Scripts:
    """The coordination scripts, registered on one client (that of one open())."""

    __slots__ = ("acquire", "client", "release", "save")

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.acquire = client.register_script(ACQUIRE)
        self.release = client.register_script(RELEASE)
        self.save = client.register_script(SAVE)


def milliseconds(ttl: float) -> int:
    """A lease TTL for PX: whole milliseconds, rounded up, at least 1."""
    if not math.isfinite(ttl):
        raise StoreError(f"redis: a lease ttl must be a finite number of seconds, not {ttl!r}")
    return max(1, math.ceil(ttl * 1000))


class RedisCoordination:
    """The Coordination methods of RedisStore, which mixes this in and owns the connection."""

    prefix: str
    _coordination: _Scripts | None = None  # registered again after each open()

    if TYPE_CHECKING:

        def _connected(self) -> _Connected: ...

    async def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        px = milliseconds(ttl)
        scripts = self._scripts()
        key = self._lease_key(name)
        return bool(await _run(scripts.acquire(keys=[key], args=[owner.encode(), px])))

    async def release_lease(self, name: str, owner: str) -> None:
        scripts = self._scripts()
        await _run(scripts.release(keys=[self._lease_key(name)], args=[owner.encode()]))

    async def lease_owner(self, name: str) -> str | None:
        client = self._connected().client
        owner: bytes | None = await _run(client.get(self._lease_key(name)))
        return None if owner is None else owner.decode()

    async def load_checkpoint(self, name: str) -> int:
        client = self._connected().client
        saved: bytes | None = await _run(client.get(self._checkpoint_key(name)))
        if saved is None:
            return 0
        try:
            return int(saved)
        except ValueError:
            raise StoreError(f"redis: checkpoint {name!r} is malformed: {saved[:40]!r}") from None

    async def save_checkpoint(self, name: str, position: int) -> None:
        scripts = self._scripts()
        key = self._checkpoint_key(name)
        await _run(scripts.save(keys=[key], args=[int(position)]))

    async def reset_checkpoint(self, name: str, position: int = 0) -> None:
        client = self._connected().client
        await _run(client.set(self._checkpoint_key(name), int(position)))

    def _scripts(self) -> _Scripts:
        client = self._connected().client
        scripts = self._coordination
        if scripts is None or scripts.client is not client:
            scripts = self._coordination = _Scripts(client)
        return scripts

    def _lease_key(self, name: str) -> bytes:
        return self.prefix.encode() + b"lease:" + name.encode()

    def _checkpoint_key(self, name: str) -> bytes:
        return self.prefix.encode() + b"checkpoint:" + name.encode()


async def _run(pending: Awaitable[Any]) -> Any:
    """Await a redis-py call; its errors become ours (as RedisStore's own calls do)."""
    try:
        return await pending
    except (RedisError, OSError) as exc:
        raise mapped(exc) from exc
