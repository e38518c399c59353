-- group_stats: ARGV[3] gid, [4] topic generation. Expires leases that ran
-- out, then returns {'OK', now, end, cursor, floor, pending, in flight,
-- dead letters, consumers, oldest pending publish time (-1), oldest dead
-- letter time (-1), blocked keys, counters (field, value, ...),
-- '--', blocked (key, offset, attempts, waiting, since) x at most 10} or {'GONE'}.
local G = load_group(ARGV[3], ARGV[4])
if not G then return {'GONE'} end
local now = now_us()
expire(G, now)
save_group(G, '')
wake(G)
local floor = G.cursor
local pending = 0
for _, key in ipairs(redis.call('HKEYS', G.e)) do
  if not is_replay(key) then
    pending = pending + 1
    local o = tonumber(key)
    if o < floor then floor = o end
  end
end
local inflight = redis.call('ZCARD', G.l)
local batches = redis.call('HVALS', G.k_)
for _, v in ipairs(batches) do
  local b = unpack_batch(v)
  pending = pending + b.n
  inflight = inflight - 1 + b.n
  if b.range then
    if b.range[1] < floor then floor = b.range[1] end
  else
    for k in pairs(b.keys) do
      local o = tonumber(k)
      if o < floor then floor = o end
    end
  end
end
local oldest = -1
if floor < G.stop and floor >= G.start then
  local ch = chunk_at(floor)
  if ch then oldest = tonumber(ch.t) end
end
local oldest_dl = -1
local first = redis.call('ZRANGE', G.xz, 0, 0)
if #first > 0 then
  local x = redis.call('HGET', G.x, first[1])
  if x then oldest_dl = tonumber(string.match(x, '^%d+|%d+|%d+|(%d+)|')) end
end
local blocked = {}
local holds = redis.call('HGETALL', G.h)
for i = 1, #holds, 2 do
  local k, holder = holds[i], holds[i + 1]
  local waiting = redis.call('LLEN', G.w .. k)
  local v = redis.call('HGET', G.e, holder)
  if v and waiting > 0 then
    local en = unpack_entry(v)
    if en.f > 0 then blocked[#blocked + 1] = { k, holder, en.a, waiting, en.f } end
  end
end
table.sort(blocked, function(a, b) return tonumber(a[2]) < tonumber(b[2]) end)
local out = {'OK', now, G.stop, G.cursor, floor, pending, inflight,
  redis.call('ZCARD', G.xz), redis.call('HLEN', G.c), oldest, oldest_dl, #blocked}
for _, f in ipairs({'delivered', 'acked', 'nacked', 'redelivered', 'dead_lettered',
    'filtered', 'expired', 'expired_leases'}) do
  out[#out + 1] = f
  out[#out + 1] = tonumber(redis.call('HGET', G.k, f) or '0')
end
out[#out + 1] = '--'
for i = 1, math.min(#blocked, 10) do
  for _, v in ipairs(blocked[i]) do out[#out + 1] = v end
end
return out
