-- extend: ARGV[3] gid, [4] topic generation, [5] extension µs, then pairs
-- of entry key and lease. Returns {'OK', outcome, deadline (0 unless O), ...}
-- or {'GONE'}.
local G = load_group(ARGV[3], ARGV[4])
if not G then return {'GONE'} end
local now = now_us()
local deadline = now + tonumber(ARGV[5])
local out = {'OK'}
for i = 6, #ARGV, 2 do
  local key, lease = ARGV[i], tonumber(ARGV[i + 1])
  local code, en = current_lease(G, key, lease)
  out[#out + 1] = code
  if code == 'O' then
    en.d = deadline
    redis.call('HSET', G.e, key, pack_entry(en))
    redis.call('ZADD', G.l, int(deadline), key)
    out[#out + 1] = deadline
  else
    out[#out + 1] = 0
  end
end
flush_batches(G)
return out
