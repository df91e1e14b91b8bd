"""The Lua scripts of the delivery side: pull, ack, nack and extend, dead-letter.

Each is one step that must not be split by a crash or a rival consumer.

Shared shape of the subscription scripts: ``KEYS[1]`` the topic stream,
``KEYS[2]`` the subscription's replay stream, ``KEYS[3]`` its lease ZSET, and a
delivery is named by ``k`` (1 or 2: which stream), its entry id and the
delivery count it was handed out with. A delivery is still held only while the
entry's pending delivery count equals that count: any redelivery raises it, so
a consumer whose lease ran out can no longer settle the message.

The lease ZSET holds an explicit lease end (server milliseconds) for entries
that were nacked or extended; an entry without one is leased until it has been
idle for the ack deadline.
"""

from __future__ import annotations

NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Many values in one argument, each as a 4-byte big-endian length and the bytes:
# redis-py spends more time packing thousands of small arguments than Redis runs.
FRAMES = """
local function frames(s)
  local pos = 1
  return function()
    if pos > #s then return nil end
    local v
    v, pos = struct.unpack('>I4c0', s, pos)
    return v
  end
end
"""

HELD = """
local function held(k, id, count)
  local p = redis.call('XPENDING', KEYS[k], ARGV[1], id, id, 1)[1]
  return p and p[4] == count
end
"""

# Replies as one MessagePack string (bin for every string, so payloads may be any
# bytes): parsing thousands of small RESP replies is what a Python client is slow at.
MSGPACK = r"""
local function bin(s)
  local n = #s
  if n < 256 then return '\196' .. string.char(n) .. s end
  if n < 65536 then return '\197' .. struct.pack('>I2', n) .. s end
  return '\198' .. struct.pack('>I4', n) .. s
end
local function arr(n)
  if n < 16 then return string.char(144 + n) end
  if n < 65536 then return '\220' .. struct.pack('>I2', n) end
  return '\221' .. struct.pack('>I4', n)
end
local function uint(n)
  if n < 128 then return string.char(n) end
  return '\206' .. struct.pack('>I4', n)
end
"""

# KEYS: topic, replay, lease. ARGV: group, consumer, max, ack_ms, scan (1: look for
# leases that ran out). Returns MessagePack [[k, id, count, [field, value, ...]], ...],
# ms until the next explicit lease end (-1: none), and the last id of each stream
# (where a blocking XREAD waits for news).
PULL = (
    NOW_MS
    + MSGPACK
    + """
local group, me, max, ack_ms = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local out, n = {}, 0
local function add(k, id, count, fields)
  local parts = {arr(4), uint(k), bin(id), uint(count), arr(#fields)}
  for i = 1, #fields do parts[#parts + 1] = bin(fields[i]) end
  out[#out + 1] = table.concat(parts)
  n = n + 1
end
local function take(k, id, count, min_idle)
  local e = redis.call('XCLAIM', KEYS[k], group, me, min_idle, id)[1]
  if e and e[2] then
    add(k, e[1], count + 1, e[2])
  else
    -- A trimmed entry can never be delivered again (Redis 7 drops it itself).
    redis.call('XACK', KEYS[k], group, id)
  end
end
-- 1. Nack delays and extensions that have run out.
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, max)) do
  redis.call('ZREM', KEYS[3], m)
  local k, id = tonumber(string.sub(m, 1, 1)), string.sub(m, 3)
  local p = redis.call('XPENDING', KEYS[k], group, id, id, 1)[1]
  if p then take(k, id, p[4], 0) end
end
-- 2. Entries idle for the ack deadline without an explicit lease: their consumer
--    died or stalled. XCLAIM's own min-idle check keeps this exact.
if ARGV[5] == '1' then
  for k = 1, 2 do
    local start = '-'
    while n < max do
      local rows = redis.call('XPENDING', KEYS[k], group, 'IDLE', ack_ms, start, '+', 100)
      for _, p in ipairs(rows) do
        if n >= max then break end
        if not redis.call('ZSCORE', KEYS[3], k .. ':' .. p[1]) then take(k, p[1], p[4], ack_ms) end
      end
      if #rows < 100 then break end
      start = '(' .. rows[#rows][1]
    end
  end
end
-- 3. New entries: replays, then the topic.
for k = 2, 1, -1 do
  if n < max then
    local r = redis.call('XREADGROUP', 'GROUP', group, me, 'COUNT', max - n, 'STREAMS', KEYS[k], '>')
    if r then for _, e in ipairs(r[1][2]) do add(k, e[1], 1, e[2]) end end
  end
end
local nxt = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')[2]
local last = {}
for k = 1, 2 do
  local e = redis.call('XREVRANGE', KEYS[k], '+', '-', 'COUNT', 1)[1]
  last[k] = e and e[1] or '0-0'
end
return {arr(n) .. table.concat(out), nxt and math.max(0, tonumber(nxt) - now) or -1, last[1], last[2]}
"""
)

# KEYS: topic, replay, lease, sub hash. ARGV: group, framed k, id, count per delivery.
ACK = (
    FRAMES
    + HELD
    + """
local n, item = 0, frames(ARGV[2])
for k in item do
  k = tonumber(k)
  local id, count = item(), tonumber(item())
  if held(k, id, count) then
    redis.call('XACK', KEYS[k], ARGV[1], id)
    if k == 2 then redis.call('XDEL', KEYS[2], id) end
    redis.call('ZREM', KEYS[3], k .. ':' .. id)
    n = n + 1
  end
end
if n > 0 then redis.call('HINCRBY', KEYS[4], 'acked', n) end
return n
"""
)

# Nack with a delay and extend are the same move: the lease now ends at now + ms.
# KEYS: topic, replay, lease. ARGV: group, ms, framed k, id, count per delivery.
LEASE = (
    NOW_MS
    + FRAMES
    + HELD
    + """
local n, item = 0, frames(ARGV[3])
for k in item do
  k = tonumber(k)
  local id, count = item(), tonumber(item())
  if held(k, id, count) then
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), k .. ':' .. id)
    n = n + 1
  end
end
return n
"""
)

# KEYS: topic, replay, lease, dlq stream, dlq seq, dlq index. ARGV: group, name, topic,
# framed per item: k, id, count, reason, error, number of field values, fields...
# Dead-letter ids are one counter for the whole prefix, used as the DLQ entry id.
DEAD = (
    NOW_MS
    + FRAMES
    + HELD
    + """
local n, item = 0, frames(ARGV[4])
for k in item do
  k = tonumber(k)
  local id, count, reason, err = item(), tonumber(item()), item(), item()
  local f = {'dl-reason', reason, 'dl-error', err, 'dl-attempts', count, 'dl-topic', ARGV[3],
    'dl-entry', id, 'dl-dead-at', now}
  for _ = 1, tonumber(item()) do f[#f + 1] = item() end
  if held(k, id, count) then
    local dl = redis.call('INCR', KEYS[5])
    redis.call('XADD', KEYS[4], dl .. '-0', unpack(f))
    redis.call('HSET', KEYS[6], dl, ARGV[2])
    redis.call('XACK', KEYS[k], ARGV[1], id)
    if k == 2 then redis.call('XDEL', KEYS[2], id) end
    redis.call('ZREM', KEYS[3], k .. ':' .. id)
    n = n + 1
  end
end
return n
"""
)
