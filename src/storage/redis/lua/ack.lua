-- ack: ARGV[3] gid, [4] topic generation, [5] caller node, then pairs of
-- entry key and lease. An older lease of a pending entry is honoured.
-- Returns {'OK', outcome, ...} (O ok, A already done, U unknown) or {'GONE'}.
local G = load_group(ARGV[3], ARGV[4])
if not G then return {'GONE'} end
local now = now_us()
local out = {'OK'}
for i = 6, #ARGV, 2 do
  local key, lease = ARGV[i], tonumber(ARGV[i + 1])
  local code, en = current_lease(G, key, lease)
  if code == 'O' or code == 'S' then
    drop_lease(G, key, en)
    remove_entry(G, key, en, now)
    count(G, 'acked')
    if is_replay(key) then
      redis.call('HDEL', G.xe, string.sub(key, 2))
      redis.call('HDEL', G.xt, string.sub(key, 2))
    end
    out[#out + 1] = 'O'
  else
    out[#out + 1] = code
  end
end
save_group(G, ARGV[5])
wake(G)
return out
