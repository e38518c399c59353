-- seek: ARGV[3] gid, [4] topic generation, [5] kind, [6] value. Moves the
-- group: everything before counts as acked, everything from it as pending;
-- leases out are forgotten (their acks report unknown), retries and key
-- holds are cleared; replays of dead letters stay.
-- Returns {'OK', offset}, {'RANGE', start, end} or {'GONE'}.
local G = load_group(ARGV[3], ARGV[4])
if not G then return {'GONE'} end
local pos, start, stop = resolve(ARGV[5], ARGV[6])
if not pos then return {'RANGE', start, stop} end
for _, key in ipairs(redis.call('HKEYS', G.e)) do
  if not is_replay(key) then
    local en = unpack_entry(redis.call('HGET', G.e, key))
    if en.s == 'L' then G.inflight[en.c] = (G.inflight[en.c] or 0) - 1 end
    redis.call('HDEL', G.e, key)
    redis.call('ZREM', G.q, key)
    redis.call('ZREM', G.l, key)
  end
end
local batches = redis.call('HGETALL', G.k_)
for i = 1, #batches, 2 do
  local b = unpack_batch(batches[i + 1])
  G.inflight[b.c] = (G.inflight[b.c] or 0) - b.n
  redis.call('ZREM', G.l, 'b' .. batches[i])
end
redis.call('UNLINK', G.k_)
for _, k in ipairs(redis.call('HKEYS', G.h)) do
  redis.call('UNLINK', G.w .. k)
end
redis.call('UNLINK', G.h)
G.cursor = pos
redis.call('HSET', G.k, 'lfloor', int(G.lseq + 1))
save_group(G, '')
G.woke = true
wake(G)
return {'OK', pos}
