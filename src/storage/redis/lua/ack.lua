-- ack: ARGV[3] gid, [4] topic generation, [5] caller node, then pairs of
-- entry key and lease. An older lease of a pending entry is honoured.
-- Returns {'OK', outcome, ...} (O ok, A already done, U unknown) or {'GONE'}.
local G = load_group(ARGV[3], ARGV[4])
if not G then return {'GONE'} end
local now = now_us()
local out = {'OK'}
-- Entries and leases removed once at the end (a key acked twice in one
-- call counts once).
local gone, unleased, undue, seen = {}, {}, {}, {}

-- Any entry: returns the outcome.
local function ack_entry(key, lease)
  local code, en = current_lease(G, key, lease)
  if seen[key] and (code == 'O' or code == 'S') then return 'A' end
  if code ~= 'O' and code ~= 'S' then return code end
  seen[key] = true
  if en.s == 'L' then
    if not en.batch then unleased[#unleased + 1] = key end
    G.inflight[en.c] = (G.inflight[en.c] or 0) - 1
  elseif en.s == 'R' then
    undue[#undue + 1] = key
  end
  if not en.batch then gone[#gone + 1] = key end
  release_key(G, key, en, now)
  count(G, 'acked')
  if is_replay(key) then
    redis.call('HDEL', G.xe, string.sub(key, 2))
    redis.call('HDEL', G.xt, string.sub(key, 2))
  end
  return 'O'
end

local batched = 0
for i = 6, #ARGV, 2 do
  local key, lease = ARGV[i], tonumber(ARGV[i + 1])
  -- Fast path: a first delivery still in its batch (as current_lease
  -- would find it, without making an entry of it).
  local b = lease % 2 == 1 and lease >= G.lfloor and lease <= G.lseq and batch_of(G, lease)
  if b and b.keys[key] then
    b.keys[key] = nil
    b.n = b.n - 1
    b.dirty = true
    G.inflight[b.c] = (G.inflight[b.c] or 0) - 1
    batched = batched + 1
    out[#out + 1] = 'O'
  else
    out[#out + 1] = ack_entry(key, lease)
  end
end
count(G, 'acked', batched)
if #gone > 0 then redis.call('HDEL', G.e, unpack(gone)) end
if #unleased > 0 then redis.call('ZREM', G.l, unpack(unleased)) end
if #undue > 0 then redis.call('ZREM', G.q, unpack(undue)) end
save_group(G, ARGV[5])
wake(G)
return out
