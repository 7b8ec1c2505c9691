"""The Lua scripts of the Redis target: each change to a read model is one atomic script.

Key layout under `<prefix><table>:` (the base):

    meta            hash: pos, state, error, gen (live generation), seq,
                    rgen / rpos (the shadow's generation and checkpoint, during a rebuild)
    <gen>:k         sorted set (score 0) of the row keys: existence and key order
    <gen>:r:<key>   hash: column -> JSON value
    <gen>:i:<col>:<json value>   sorted set of the keys whose indexed column has that value
    trash           set of generations to delete (after a swap or an abort)

Rows of a generation are found by their key, never listed by SCAN, so a swap
is one HSET of `gen`; the old generation is deleted afterwards, in the
background, resumed at the next open if the process dies first.
Positions are compared as decimal strings, exactly as written.
"""

from __future__ import annotations

INIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'pos', '0', 'state', 'running', 'gen', '1', 'seq', '1')
end
return redis.call('HMGET', KEYS[1], 'pos', 'state', 'error', 'rpos')
"""

META = """
return redis.call('HMGET', KEYS[1], 'pos', 'state', 'error', 'rpos')
"""

SET_STATE = """
redis.call('HSET', KEYS[1], 'state', ARGV[1])
if ARGV[2] == '' then redis.call('HDEL', KEYS[1], 'error')
else redis.call('HSET', KEYS[1], 'error', ARGV[2]) end
return 1
"""

# KEYS[1] meta; ARGV: base, mode (l|s), after, position, indexed (JSON list),
# defaults (JSON object column -> encoded value), ops (JSON [[kind, key, {column: encoded}]])
APPLY = """
local meta = KEYS[1]
local posf, genf = 'pos', 'gen'
if ARGV[2] == 's' then posf, genf = 'rpos', 'rgen' end
local cur = redis.call('HGET', meta, posf)
if cur ~= ARGV[3] then return {0, cur or ''} end
local root = ARGV[1] .. redis.call('HGET', meta, genf) .. ':'
local keys = root .. 'k'
local indexed = cjson.decode(ARGV[5])
local defaults = cjson.decode(ARGV[6])
local ops = cjson.decode(ARGV[7])
for _, op in ipairs(ops) do
  local kind, key, fields = op[1], op[2], op[3]
  local row = root .. 'r:' .. key
  local exists = redis.call('ZSCORE', keys, key) ~= false
  if kind == 'd' then
    if exists then
      for _, col in ipairs(indexed) do
        local old = redis.call('HGET', row, col)
        if old then redis.call('ZREM', root .. 'i:' .. col .. ':' .. old, key) end
      end
      redis.call('DEL', row)
      redis.call('ZREM', keys, key)
    end
  elseif kind == 'p' or exists then
    if not exists then
      for col, value in pairs(defaults) do
        if fields[col] == nil then fields[col] = value end
      end
      redis.call('ZADD', keys, 0, key)
    end
    local flat = {}
    for col, value in pairs(fields) do
      flat[#flat + 1] = col
      flat[#flat + 1] = value
    end
    for _, col in ipairs(indexed) do
      local value = fields[col]
      if value ~= nil then
        local old = false
        if exists then old = redis.call('HGET', row, col) end
        if old ~= value then
          if old then redis.call('ZREM', root .. 'i:' .. col .. ':' .. old, key) end
          redis.call('ZADD', root .. 'i:' .. col .. ':' .. value, 0, key)
        end
      end
    end
    if #flat > 0 then redis.call('HSET', row, unpack(flat)) end
  end
end
redis.call('HSET', meta, posf, ARGV[4])
return {1, ARGV[4]}
"""

# KEYS[1] meta; ARGV: base, mode (l|s), key... -> per key: {row hash as a flat list} or nil
ROWS = """
local genf = 'gen'
if ARGV[2] == 's' then genf = 'rgen' end
local gen = redis.call('HGET', KEYS[1], genf)
if not gen then return redis.error_reply('CATGAD no such read model generation') end
local root = ARGV[1] .. gen .. ':'
local out = {}
for i = 3, #ARGV do
  local key = ARGV[i]
  if redis.call('ZSCORE', root .. 'k', key) then
    out[#out + 1] = redis.call('HGETALL', root .. 'r:' .. key)
  else
    out[#out + 1] = false
  end
end
return out
"""

# KEYS[1] meta; ARGV: base, set suffix (k | i:<col>:<value>), min ('-' or '(' .. key), limit
FIND = """
local gen = redis.call('HGET', KEYS[1], 'gen')
if not gen then return {} end
local root = ARGV[1] .. gen .. ':'
local found = redis.call('ZRANGEBYLEX', root .. ARGV[2], ARGV[3], '+', 'LIMIT', 0, ARGV[4])
local out = {}
for i, key in ipairs(found) do
  out[i] = {key, redis.call('HGETALL', root .. 'r:' .. key)}
end
return out
"""

# KEYS[1] meta, KEYS[2] trash
BEGIN_REBUILD = """
local old = redis.call('HGET', KEYS[1], 'rgen')
if old then redis.call('SADD', KEYS[2], old) end
local gen = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HSET', KEYS[1], 'rgen', gen, 'rpos', '0')
return gen
"""

# KEYS[1] meta, KEYS[2] trash; ARGV[1] the shadow's expected checkpoint
SWAP = """
local rpos = redis.call('HGET', KEYS[1], 'rpos')
if rpos ~= ARGV[1] then return {0, rpos or ''} end
local old = redis.call('HGET', KEYS[1], 'gen')
redis.call('HSET', KEYS[1], 'gen', redis.call('HGET', KEYS[1], 'rgen'), 'pos', rpos)
redis.call('HDEL', KEYS[1], 'rgen', 'rpos')
redis.call('SADD', KEYS[2], old)
return {1, old}
"""

ABORT = """
local old = redis.call('HGET', KEYS[1], 'rgen')
redis.call('HDEL', KEYS[1], 'rgen', 'rpos')
if old then redis.call('SADD', KEYS[2], old) end
return old
"""
