-- dl_change: ARGV[3] gid, [4] topic generation, [5] 'replay' or 'purge',
-- [6] '1' when every id must be queued (or, for a replay, being replayed),
-- then ids. Replay puts queued dead
-- letters back into the group as new entries ("r<id>", attempts reset,
-- due now); purge deletes them. Returns {'OK', changed, remaining},
-- {'MISSING', id} (nothing changed) or {'GONE'}.
local G = load_group(ARGV[3], ARGV[4])
if not G then return {'GONE'} end
local replay = ARGV[5] == 'replay'
if ARGV[6] == '1' then
  for i = 7, #ARGV do
    local queued = redis.call('ZSCORE', G.xz, ARGV[i])
    local replaying = replay and redis.call('HEXISTS', G.e, 'r' .. ARGV[i]) == 1
    if not queued and not replaying then return {'MISSING', ARGV[i]} end
  end
end
local now = now_us()
local changed = 0
for i = 7, #ARGV do
  local id = ARGV[i]
  if redis.call('ZREM', G.xz, id) == 1 then
    redis.call('HDEL', G.x, id)
    changed = changed + 1
    if replay then
      local key = 'r' .. id
      redis.call('HSET', G.e, key, pack_entry({ a = 0, l = 0, d = 0, c = '', f = 0, s = 'R', k = '' }))
      redis.call('ZADD', G.q, int(now), key)
      G.woke = true
    else
      redis.call('HDEL', G.xe, id)
      redis.call('HDEL', G.xt, id)
    end
  end
end
wake(G)
return {'OK', changed, redis.call('ZCARD', G.xz)}
