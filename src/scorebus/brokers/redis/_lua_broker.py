"""The Lua scripts of the broker side: subscribe, publish, stats, replay, tidy.

Each runs atomically, so two processes creating the same subscription, or a
publish retried after a lost reply, cannot interleave (see ``_lua`` for the
delivery side and the shared snippets).
"""

from __future__ import annotations

from ._lua import FRAMES, NOW_MS

# KEYS: subs hash, sub hash, topic stream, replay stream. ARGV: name, topic, ack_deadline_s, now.
# Returns the topic the subscription is on (another one: the caller raises).
SUBSCRIBE = """
local have = redis.call('HGET', KEYS[1], ARGV[1])
if have and have ~= ARGV[2] then return have end
local function groups(key)
  if redis.call('EXISTS', key) == 0 then return {} end
  local names = {}
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do names[#names + 1] = g[2] end
  return names
end
local function has(names, name)
  for _, n in ipairs(names) do if n == name then return true end end
  return false
end
local existing = groups(KEYS[3])
if not has(existing, ARGV[1]) then
  -- The first group on a topic adopts what was published before it; later ones
  -- start at the end. A known subscription whose group vanished (a Redis restart
  -- without persistence) takes whatever is there rather than lose it.
  local from = '$'
  if have or #existing == 0 then from = '0' end
  redis.call('XGROUP', 'CREATE', KEYS[3], ARGV[1], from, 'MKSTREAM')
end
if not has(groups(KEYS[4]), ARGV[1]) then
  redis.call('XGROUP', 'CREATE', KEYS[4], ARGV[1], '0', 'MKSTREAM')
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], 'topic', ARGV[2], 'ack_deadline_s', ARGV[3])
redis.call('HSETNX', KEYS[2], 'created_at', ARGV[4])
return ARGV[2]
"""

# KEYS: topic stream, topics set, then one seen key per event when deduplicating.
# ARGV: dedupe ms (0: off), maxlen, topic, framed per event: number of field values,
# fields... Returns how many were new.
PUBLISH = (
    FRAMES
    + """
local n, e, item = 0, 2, frames(ARGV[4])
local dedupe, maxlen = ARGV[1] ~= '0', tonumber(ARGV[2])
for nf in item do
  local f = {}
  for j = 1, tonumber(nf) do f[j] = item() end
  e = e + 1
  if not dedupe or redis.call('SET', KEYS[e], '1', 'NX', 'PX', ARGV[1]) then
    if maxlen > 0 then
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(f))
    else
      redis.call('XADD', KEYS[1], '*', unpack(f))
    end
    n = n + 1
  end
end
redis.call('SADD', KEYS[2], ARGV[3])
return n
"""
)

# KEYS: topic, replay, lease, sub hash, dlq, replayed. ARGV: group.
# Returns pending, in flight, acked, dead-lettered.
STATS = (
    NOW_MS
    + """
local group = ARGV[1]
local ack_ms = math.floor(tonumber(redis.call('HGET', KEYS[4], 'ack_deadline_s') or '60') * 1000)
local function info(key)
  if redis.call('EXISTS', key) == 0 then return 0, 0 end
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
    local h = {}
    for i = 1, #g, 2 do h[g[i]] = g[i + 1] end
    if h['name'] == group then
      local lag = h['lag']
      if not lag then
        -- Unknown after deletions (or before Redis 7): count what is after the cursor.
        lag = #redis.call('XRANGE', key, '(' .. h['last-delivered-id'], '+')
      end
      return lag, h['pending']
    end
  end
  return 0, 0
end
local lag1, pel1 = info(KEYS[1])
local lag2, pel2 = info(KEYS[2])
-- Leased entries whose lease has ended are waiting for a consumer: pending, not in flight.
local visible = redis.call('ZCOUNT', KEYS[3], '-inf', now)
for k = 1, 2 do
  if redis.call('EXISTS', KEYS[k]) == 1 then
    local start = '-'
    while true do
      local rows = redis.call('XPENDING', KEYS[k], group, 'IDLE', ack_ms, start, '+', 1000)
      for _, p in ipairs(rows) do
        if not redis.call('ZSCORE', KEYS[3], k .. ':' .. p[1]) then visible = visible + 1 end
      end
      if #rows < 1000 then break end
      start = '(' .. rows[#rows][1]
    end
  end
end
local acked = tonumber(redis.call('HGET', KEYS[4], 'acked') or '0')
local dead = redis.call('XLEN', KEYS[5]) - redis.call('HLEN', KEYS[6])
return {lag1 + lag2 + visible, math.max(0, pel1 + pel2 - visible), acked, dead}
"""
)

# KEYS: dlq stream, replayed hash, replay stream. ARGV: now, dead-letter ids...
REPLAY = """
local n = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local e = redis.call('XRANGE', KEYS[1], id .. '-0', id .. '-0')[1]
  if e and redis.call('HEXISTS', KEYS[2], id) == 0 then
    local f = {}
    for j = 1, #e[2], 2 do
      if string.sub(e[2][j], 1, 3) ~= 'dl-' then
        f[#f + 1] = e[2][j]
        f[#f + 1] = e[2][j + 1]
      end
    end
    if #f == 0 then f = {'data', ''} end
    redis.call('XADD', KEYS[3], '*', unpack(f))
    redis.call('HSET', KEYS[2], id, ARGV[1])
    n = n + 1
  end
end
return n
"""

# KEYS: topic, replay. ARGV: group, consumer, reap idle ms, drop self (1/0), trim (1/0).
# Trims topic entries every group has acked, and removes consumers with nothing
# pending: this one when closing, others once idle for the reap time.
TIDY = """
local function less(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, bm = tonumber(am), tonumber(bm)
  return am < bm or (am == bm and tonumber(as) < tonumber(bs))
end
local trimmed = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  local min = nil
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local h = {}
    for i = 1, #g, 2 do h[g[i]] = g[i + 1] end
    local id = h['last-delivered-id']
    if h['pending'] > 0 then id = redis.call('XPENDING', KEYS[1], h['name'])[2] end
    if not min or less(id, min) then min = id end
  end
  if min and ARGV[5] == '1' then trimmed = redis.call('XTRIM', KEYS[1], 'MINID', min) end
end
for k = 1, 2 do
  if redis.call('EXISTS', KEYS[k]) == 1 then
    for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[k], ARGV[1])) do
      local h = {}
      for i = 1, #c, 2 do h[c[i]] = c[i + 1] end
      local mine = h['name'] == ARGV[2]
      if h['pending'] == 0 and ((mine and ARGV[4] == '1') or (not mine and h['idle'] > tonumber(ARGV[3]))) then
        redis.call('XGROUP', 'DELCONSUMER', KEYS[k], ARGV[1], h['name'])
      end
    end
  end
end
return trimmed
"""
