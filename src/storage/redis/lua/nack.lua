-- nack: ARGV[3] gid, [4] topic generation, [5] caller node, [6] delay µs
-- (-1: the group's backoff), [7] '1' to dead-letter now, [8] reason, then
-- pairs of entry key and lease. Only the current lease counts.
-- Returns {'OK', dead-lettered count, outcome, ...} (O, S stale, A, U) or {'GONE'}.
local G = load_group(ARGV[3], ARGV[4])
if not G then return {'GONE'} end
local now = now_us()
local delay = tonumber(ARGV[6])
if delay < 0 then delay = nil end
local dead = ARGV[7] == '1'
local reason = ARGV[8]
if reason == '' then reason = 'nacked' end
local out = {'OK', 0}
for i = 9, #ARGV, 2 do
  local key, lease = ARGV[i], tonumber(ARGV[i + 1])
  local code, en = current_lease(G, key, lease)
  if code == 'O' then
    drop_lease(G, key, en)
    count(G, 'nacked')
    fail(G, key, en, delay, reason, dead, now)
  end
  out[#out + 1] = code
end
save_group(G, ARGV[5])
wake(G)
out[2] = G.dead
return out
