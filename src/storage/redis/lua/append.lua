-- append: ARGV[3] event count N, [4] count K of events with ids the client
-- chose, then K pairs (event index from 1, id); then the chunk count, then
-- per chunk the fields of its stream entry after n and t (see chunks.lua):
-- count, z, the records' length in bytes, y, yz, k, kz. The records
-- themselves are already in the topic's payload hash x, chunk i's under
-- '<nonce>:<i>' (the node sends that HSET in one transaction with this
-- call, so Lua never makes a string of them); a field missing or of
-- another length answers {'LOST'} and the call stores nothing. A chunk
-- that loses duplicates is stored under '<nonce>:<i>:d'. A call whose
-- nonce is already stored (the same transaction run again) answers
-- {'AGAIN'} and keeps what the first run stored. All or nothing, at
-- consecutive offsets, one publish time (Redis clock, never behind the
-- topic's last). Ids seen within the dedup window (also earlier in the
-- call) keep the original's offset and leave their chunk. Trims by
-- retention and wakes the other nodes that watch the topic (watch.lua);
-- after the chunks come the caller's node id (it wakes its own consumers
-- and readers itself), '1' when nodes of an older release, which do not
-- watch, are live (then every append is announced), and the call's nonce
-- (kept in bn, scored with the call's first offset: a node's chunk cache
-- proves with it that the chunks it sent are the ones stored, see
-- chunk_cache.rs). Returns {'OK', publish time, first offset, the topic's
-- generation, then per duplicate its event index and the original's
-- offset} (the others take consecutive offsets from the first, in order),
-- {'GONE'}, {'LOST'} or {'AGAIN'} (then the call's payload fields are
-- deleted, but for those a first run stored).
local x, n, chunks_at = base .. 'x', tonumber(ARGV[3]), 5 + 2 * tonumber(ARGV[4])
local nonce = ARGV[chunks_at + 7 * tonumber(ARGV[chunks_at]) + 3]
-- The payload field of chunk i.
local function field(i, repacked)
  return payload_field(nonce, i, repacked)
end
local function drop_payload()
  for i = 1, tonumber(ARGV[chunks_at]) do redis.call('HDEL', x, field(i)) end
end
local m = redis.call('HMGET', KEYS[1], 'end', 'last', 'dedup', 'gen')
if not m[1] then
  drop_payload()
  return {'GONE'}
end
-- The same call again (a cluster client resends a transaction whose
-- answer it lost): its HSET wrote the fields again as sent; those the
-- first run stored as sent stay (the same bytes), the others go.
local earlier = redis.call('ZSCORE', base .. 'bn', nonce)
if earlier then
  local named = {}
  local entries = redis.call('XRANGE', base .. 's', sid(tonumber(earlier)), '+', 'COUNT',
    tonumber(ARGV[chunks_at]))
  for _, item in ipairs(entries) do
    local ref = chunk_of(item).ref
    if ref then named[ref] = true end
  end
  for i = 1, tonumber(ARGV[chunks_at]) do
    if not named[field(i)] then redis.call('HDEL', x, field(i)) end
  end
  return {'AGAIN'}
end
for i = 1, tonumber(ARGV[chunks_at]) do
  if redis.call('HSTRLEN', x, field(i)) ~= tonumber(ARGV[chunks_at + 7 * (i - 1) + 3]) then
    drop_payload()
    return {'LOST'}
  end
end
local stop = tonumber(m[1])
local clock = now_us()
local now = math.max(clock, tonumber(m[2]))
local window = tonumber(m[3])
local d, dz, s = base .. 'd', base .. 'dz', base .. 's'
if window > 0 then
  local old = redis.call('ZRANGEBYSCORE', dz, '-inf', int(now - window), 'LIMIT', 0, 1000)
  for _, id in ipairs(old) do
    redis.call('HDEL', d, id)
    redis.call('ZREM', dz, id)
  end
end
local out = {'OK', now, stop, m[4]}
local first, size = stop, 0
local tnow = int(now)
local dropped = nil -- event index -> true, for duplicates
local kept = n
local chosen = tonumber(ARGV[4])
for j = 1, chosen do
  local i, id = tonumber(ARGV[3 + 2 * j]), ARGV[4 + 2 * j]
  local dup = nil
  if window > 0 then
    dup = redis.call('HGET', d, id)
    if dup then
      local at = redis.call('ZSCORE', dz, id)
      if not at or tonumber(at) < now - window then dup = nil end
    end
  end
  if dup then
    dropped = dropped or {}
    dropped[i] = true
    kept = kept - 1
    out[#out + 1] = i
    out[#out + 1] = tonumber(dup)
  elseif window > 0 then
    -- Its offset: the first plus the events before it that are kept
    -- (pairs come in event order).
    redis.call('HSET', d, id, int(first + (i - 1) - (n - kept)))
    redis.call('ZADD', dz, tnow, id)
  end
end
stop = first + kept

-- Packs a list of strings as a chunk field and its sizes.
local function pack(list)
  local sizes = {}
  for i, v in ipairs(list) do sizes[i] = #v end
  return table.concat(list), table.concat(sizes, ',')
end

local at, event, offset = chunks_at, 0, first
for chunk = 1, tonumber(ARGV[at]) do
  local cn, z, len, y, yz, k, kz = tonumber(ARGV[at + 1]), ARGV[at + 2], tonumber(ARGV[at + 3]),
    ARGV[at + 4], ARGV[at + 5], ARGV[at + 6], ARGV[at + 7]
  at = at + 7
  local hit = false
  if dropped then
    for i = event + 1, event + cn do
      if dropped[i] then hit = true break end
    end
  end
  if not hit then
    event = event + cn
  else
    -- Duplicates leave the chunk: its records are read and stored anew,
    -- under another field (a run of this call again rewrites field(chunk)).
    local c = redis.call('HGET', x, field(chunk))
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
    len = #c
    redis.call('HDEL', x, field(chunk))
    if cn > 0 then redis.call('HSET', x, field(chunk, true), c) end
  end
  if cn > 0 then
    local f = field(chunk, hit)
    redis.call('XADD', s, sid(offset), 'n', cn, 't', tnow, 'z', z, 'p', len .. '|' .. f,
      'y', y, 'yz', yz, 'k', k, 'kz', kz)
    offset = offset + cn
    size = size + len
  end
end
if stop > first then
  redis.call('ZADD', base .. 'b', tnow, string.format('%020d|%d|%s|%d', first, size, nonce, tonumber(ARGV[chunks_at])))
  redis.call('ZADD', base .. 'bn', int(first), nonce)
  redis.call('HSET', KEYS[1], 'end', int(stop), 'last', tnow)
  redis.call('HINCRBY', KEYS[1], 'bytes', size)
  redis.call('HINCRBY', KEYS[1], 'published', stop - first)
  trim(now)
  -- Registrations past their time are dropped; a node that lists itself
  -- only is not sent its own wake-up.
  local w, caller, nowms, others = base .. 'w', ARGV[at + 1], math.floor(clock / 1000), ARGV[at + 2] == '1'
  local ws = redis.call('HGETALL', w)
  for i = 1, #ws, 2 do
    if tonumber(ws[i + 1]) < nowms then
      redis.call('HDEL', w, ws[i])
    elseif ws[i] ~= caller then
      others = true
    end
  end
  if others then
    redis.call('PUBLISH', chan, 't\n' .. topic .. '\n' .. int(stop))
  end
end
return out
