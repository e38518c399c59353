-- append: ARGV[3] event count, then per event: id, '1' when the server made
-- the id (no dedup entry), type, key, record. All or nothing, at
-- consecutive offsets, one publish time (Redis clock, never behind the
-- topic's last). Ids seen within the dedup window return the original's
-- offset. Trims by retention and wakes every node.
-- Returns {'OK', publish time, offset, duplicate (0/1), ...} or {'GONE'}.
local m = redis.call('HMGET', KEYS[1], 'end', 'last', 'dedup')
if not m[1] then return {'GONE'} end
local stop = tonumber(m[1])
local now = math.max(now_us(), tonumber(m[2]))
local window = tonumber(m[3])
local d, dz, s = base .. 'd', base .. 'dz', base .. 's'
if window > 0 then
  local old = redis.call('ZRANGEBYSCORE', dz, '-inf', int(now - window), 'LIMIT', 0, 1000)
  for _, id in ipairs(old) do
    redis.call('HDEL', d, id)
    redis.call('ZREM', dz, id)
  end
end
local out = {'OK', now}
local first, size, n = stop, 0, tonumber(ARGV[3])
local tnow = int(now)
for i = 0, n - 1 do
  local at = 4 + i * 5
  local id, server, etype, key, rec = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4]
  local dup = nil
  if window > 0 and server == '0' then
    dup = redis.call('HGET', d, id)
    if dup then
      local seen = redis.call('ZSCORE', dz, id)
      if not seen or tonumber(seen) < now - window then dup = nil end
    end
  end
  if dup then
    out[#out + 1] = tonumber(dup)
    out[#out + 1] = 1
  else
    redis.call('XADD', s, sid(stop), 't', tnow, 'y', etype, 'k', key, 'e', rec)
    if window > 0 and server == '0' then
      redis.call('HSET', d, id, int(stop))
      redis.call('ZADD', dz, tnow, id)
    end
    out[#out + 1] = stop
    out[#out + 1] = 0
    stop = stop + 1
    size = size + #rec
  end
end
if stop > first then
  redis.call('ZADD', base .. 'b', tnow, string.format('%020d|%d', first, size))
  redis.call('HSET', KEYS[1], 'end', int(stop), 'last', tnow)
  redis.call('HINCRBY', KEYS[1], 'bytes', size)
  redis.call('HINCRBY', KEYS[1], 'published', stop - first)
  trim(now)
  redis.call('PUBLISH', chan, 't\n' .. topic .. '\n' .. int(stop))
end
return out
