"""The process index of the Redis store, under the store's prefix P, per process <p>:

    P pidx:<p>:rows         Hash    instance -> its row (JSON)
    P pidx:<p>:due          ZSet    instance, scored by when it is due
    P pidx:<p>:asked        ZSet    instance, scored by when its approval was asked
    P pidx:<p>:in:<state>   Set     the instances in a state
    P pidx:<p>:states       Set     the states that ever had an instance

`due` is ZRANGEBYSCORE -inf now LIMIT 0 N: O(log n + N), the waiting members are never read.
A put is one script (atomic): each row replaces the stored one only when of a higher version,
and moves the instance between the sets. The script derives the `in:<state>` keys from the
prefix it is given, so the index expects one Redis server (no cluster), as the store does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
import redis.asyncio as aioredis

from catgad.store.process_index import DueTimer, InstanceRow, Summary
from catgad.store.redis_coordination import _run

if TYPE_CHECKING:
    from catgad.store.redis import RedisStore

# KEYS: 1 rows, 2 due, 3 asked, 4 states. ARGV: 1 the `in:` key prefix, then per row six:
# instance, row JSON, version, state ('' none), due ('' none), asked ('' none).
PUT = """
local written = 0
for i = 2, #ARGV, 6 do
  local instance, row, version = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local state, due, asked = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local old = redis.call('HGET', KEYS[1], instance)
  local older = true
  if old then
    local was = cjson.decode(old)
    if tonumber(was['v']) >= version then
      older = false
    elseif was['s'] ~= cjson.null then
      redis.call('SREM', ARGV[1] .. was['s'], instance)
    end
  end
  if older then
    redis.call('HSET', KEYS[1], instance, row)
    if state ~= '' then
      redis.call('SADD', ARGV[1] .. state, instance)
      redis.call('SADD', KEYS[4], state)
    end
    if due ~= '' then redis.call('ZADD', KEYS[2], due, instance)
    else redis.call('ZREM', KEYS[2], instance) end
    if asked ~= '' then redis.call('ZADD', KEYS[3], asked, instance)
    else redis.call('ZREM', KEYS[3], instance) end
    written = written + 1
  end
end
return written
"""


def _number(value: float | None) -> str:
    return "" if value is None else repr(float(value))


class RedisProcessIndex:
    durable = True

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self._script: Any = None
        self._client: aioredis.Redis | None = None

    def _keys(self, process: str) -> tuple[bytes, bytes, bytes, bytes, bytes]:
        base = f"{self.store.prefix}pidx:{process}:".encode()
        return base + b"rows", base + b"due", base + b"asked", base + b"states", base + b"in:"

    def _put_script(self, client: aioredis.Redis) -> Any:
        if self._script is None or self._client is not client:
            self._script, self._client = client.register_script(PUT), client
        return self._script

    async def put(self, process: str, rows: Sequence[InstanceRow]) -> None:
        if not rows:
            return
        client = self.store._connected().client
        rows_key, due_key, asked_key, states_key, in_prefix = self._keys(process)
        args: list[Any] = [in_prefix]
        for r in rows:
            args += [
                r.instance.encode(),
                orjson.dumps(r.to_json()),
                r.version,
                (r.state or "").encode(),
                _number(r.due),
                _number(r.asked_at),
            ]
        script = self._put_script(client)
        await _run(script(keys=[rows_key, due_key, asked_key, states_key], args=args))

    async def due(self, process: str, now: float, limit: int) -> list[DueTimer]:
        client = self.store._connected().client
        key = self._keys(process)[1]
        found = await _run(
            client.zrangebyscore(key, "-inf", repr(float(now)), start=0, num=limit, withscores=True)
        )
        return [DueTimer(member.decode(), float(score)) for member, score in found]

    async def next_due(self, process: str) -> float | None:
        client = self.store._connected().client
        found = await _run(client.zrange(self._keys(process)[1], 0, 0, withscores=True))
        return float(found[0][1]) if found else None

    async def drop(self, process: str, timer: DueTimer) -> None:
        """Nothing to do: the instance's score is replaced with the row (put)."""

    async def listing(self, process: str, state: str | None = None) -> list[InstanceRow]:
        client = self.store._connected().client
        rows_key, _, _, _, in_prefix = self._keys(process)
        if state is None:
            bodies = await _run(client.hvals(rows_key))
        else:
            members = sorted(await _run(client.smembers(in_prefix + state.encode())))
            bodies = await _run(client.hmget(rows_key, members)) if members else []
        rows = [InstanceRow.from_json(orjson.loads(b)) for b in bodies if b is not None]
        return sorted(rows, key=lambda row: row.instance)

    async def asking(self, process: str, limit: int) -> list[InstanceRow]:
        client = self.store._connected().client
        rows_key, _, asked_key, _, _ = self._keys(process)
        members = await _run(client.zrange(asked_key, 0, limit - 1)) if limit > 0 else []
        bodies = await _run(client.hmget(rows_key, members)) if members else []
        return [InstanceRow.from_json(orjson.loads(b)) for b in bodies if b is not None]

    async def summary(self, process: str) -> Summary:
        client = self.store._connected().client
        _, _, asked_key, states_key, in_prefix = self._keys(process)
        states = sorted(s.decode() for s in await _run(client.smembers(states_key)))
        pipe = client.pipeline(transaction=False)
        for state in states:
            pipe.scard(in_prefix + state.encode())
        pipe.zcard(asked_key)
        pipe.zrange(asked_key, 0, 0, withscores=True)
        *counts, asked, oldest = await _run(pipe.execute())
        return Summary(
            {s: int(n) for s, n in zip(states, counts, strict=True) if n},
            int(asked),
            float(oldest[0][1]) if oldest else None,
        )
