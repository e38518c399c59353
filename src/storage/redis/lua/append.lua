-- append: ARGV[3] event count N, then per event its id and '1' when the
-- server made it (no dedup entry); then the chunk count, then per chunk
-- the fields of its stream entry after n and t (see common.lua): count, z,
-- c, y, yz, k, kz. All or nothing, at consecutive offsets, one publish time
-- (Redis clock, never behind the topic's last). Ids seen within the dedup
-- window (also earlier in the call) return the original's offset and leave
-- their chunk. Trims by retention and wakes every node.
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
local dropped = nil -- event index -> true, for duplicates
for i = 1, n do
  local id, server = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
  local dup = nil
  if window > 0 and server == '0' then
    dup = redis.call('HGET', d, id)
    if dup then
      local at = redis.call('ZSCORE', dz, id)
      if not at or tonumber(at) < now - window then dup = nil end
    end
  end
  if dup then
    dropped = dropped or {}
    dropped[i] = true
    out[#out + 1] = tonumber(dup)
    out[#out + 1] = 1
  else
    if window > 0 and server == '0' then
      redis.call('HSET', d, id, int(stop))
      redis.call('ZADD', dz, tnow, id)
    end
    out[#out + 1] = stop
    out[#out + 1] = 0
    stop = stop + 1
  end
end

-- Packs a list of strings as a chunk field and its sizes.
local function pack(list)
  local sizes = {}
  for i, v in ipairs(list) do sizes[i] = #v end
  return table.concat(list), table.concat(sizes, ',')
end

local at, event, offset = 4 + 2 * n, 0, first
for _ = 1, tonumber(ARGV[at]) do
  local cn, z, c, y, yz, k, kz = tonumber(ARGV[at + 1]), ARGV[at + 2], ARGV[at + 3],
    ARGV[at + 4], ARGV[at + 5], ARGV[at + 6], ARGV[at + 7]
  at = at + 7
  if dropped then
    local recs, types, keys = split(c, z, cn), split(y, yz, cn), split(k, kz, cn)
    local r, t, kk = {}, {}, {}
    for i = 1, cn do
      if not dropped[event + i] then
        r[#r + 1], t[#t + 1], kk[#kk + 1] = recs[i], types[i], keys[i]
      end
    end
    event = event + cn
    cn = #r
    c, z = pack(r)
    y, yz = pack(t)
    k, kz = pack(kk)
  end
  if cn > 0 then
    redis.call('XADD', s, sid(offset), 'n', cn, 't', tnow, 'z', z, 'c', c,
      'y', y, 'yz', yz, 'k', k, 'kz', kz)
    offset = offset + cn
    size = size + #c
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
