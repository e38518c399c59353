-- release: ARGV[3] gid, [4] topic generation, [5] consumer, then entry
-- keys whose leases stay (what a unary pull took). Ends the consumer's
-- other leases at once (each counts as a failed attempt, retried without
-- backoff) and unregisters it. Returns {'OK', released, dead-lettered}
-- or {'GONE'}.
local G = load_group(ARGV[3], ARGV[4])
if not G then return {'GONE'} end
local cid = ARGV[5]
local keep = {}
for i = 6, #ARGV do keep[ARGV[i]] = true end
local now = now_us()
local released = 0
local function release(key, en)
  drop_lease(G, key, en)
  fail(G, key, en, 0, 'consumer disconnected', false, now)
  released = released + 1
end
for _, key in ipairs(redis.call('ZRANGE', G.l, 0, -1)) do
  local v = nil
  if string.byte(key, 1) == 98 then -- 'b': a batch
    local lease = tonumber(string.sub(key, 2))
    local b = batch_of(G, lease)
    if b and b.c == cid then
      for k in pairs(batch_keys(b)) do
        if not keep[k] then release(k, unbatch(b, k, lease)) end
      end
    end
  else
    v = redis.call('HGET', G.e, key)
  end
  if v then
    local en = unpack_entry(v)
    if en.s == 'L' and en.c == cid and not keep[key] then release(key, en) end
  end
end
redis.call('HDEL', G.c, cid)
G.inflight[cid] = nil
save_group(G, '')
wake(G)
return {'OK', released, G.dead}
