-- ack: ARGV[3] gid, [4] topic generation, [5] caller node, [6] a consumer
-- of the caller to claim for next ('' none), [7] most, [8] bytes, [9]
-- hints (see parse_hints), then pairs of entry key and lease; the key may be a range 'first-last' of
-- offsets under one lease (as many pairs, in that order). An older lease
-- of a pending entry is honoured. When the acks gave the consumer of [6]
-- credit back, claims for it in the same step (claiming.lua).
-- Returns {'OK', wake (1: the caller's consumers may have work), outcomes
-- (one letter per key: O ok, A already done, S stale, U unknown), then
-- the claim's answer when it claimed} or {'GONE'}.
local G = load_group(ARGV[3], ARGV[4])
if not G then return {'GONE'} end
local now = now_us()
local codes = {}
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
-- A first delivery still in its batch (as current_lease would find it,
-- without making an entry of it); else any entry.
local function ack_key(key, lease, odd)
  local b = odd and batch_of(G, lease)
  if b and batch_keys(b)[key] then
    b.keys[key] = nil
    b.n = b.n - 1
    b.dirty = true
    G.inflight[b.c] = (G.inflight[b.c] or 0) - 1
    batched = batched + 1
    codes[#codes + 1] = 'O'
  else
    codes[#codes + 1] = ack_entry(key, lease)
  end
end

for i = 10, #ARGV, 2 do
  local key, lease = ARGV[i], tonumber(ARGV[i + 1])
  local odd = lease % 2 == 1 and lease >= G.lfloor and lease <= G.lseq
  local lo, hi = string.match(key, '^(%d+)-(%d+)$')
  if not lo then
    ack_key(key, lease, odd)
  else
    -- A range of keys under one batch lease: the whole batch as one step
    -- when it is exactly that batch, untouched; else key by key.
    lo, hi = tonumber(lo), tonumber(hi)
    local b = odd and batch_of(G, lease)
    if b and b.range and b.range[1] == lo and b.range[2] == hi then
      G.inflight[b.c] = (G.inflight[b.c] or 0) - b.n
      batched = batched + b.n
      codes[#codes + 1] = string.rep('O', b.n)
      b.range, b.keys, b.n, b.dirty = nil, {}, 0, true
    else
      for k = lo, hi do ack_key(int(k), lease, odd) end
    end
  end
end
count(G, 'acked', batched)
if #gone > 0 then redis.call('HDEL', G.e, unpack(gone)) end
if #unleased > 0 then redis.call('ZREM', G.l, unpack(unleased)) end
if #undue > 0 then redis.call('ZREM', G.q, unpack(undue)) end
local cid = ARGV[6]
local wake_caller = 1
local claimed = nil
if cid ~= '' and (G.inflight[cid] or 0) < 0 then
  claimed = claim(G, cid, tonumber(ARGV[7]), tonumber(ARGV[8]), now, parse_hints(ARGV[9]))
  -- Credit that went to other consumers (by the acks or by expiry), or
  -- work released behind a key, still needs the caller's consumers woken.
  local others = G.woke
  for c, delta in pairs(G.inflight) do
    if c ~= cid and delta < 0 then others = true end
  end
  if claimed and claimed[4] == 0 and not others then wake_caller = 0 end
end
save_group(G, ARGV[5])
wake(G)
if not claimed then return {'OK', wake_caller, table.concat(codes)} end
claim_next_wake(G, claimed)
table.insert(claimed, 1, table.concat(codes))
table.insert(claimed, 1, wake_caller)
table.insert(claimed, 1, 'OK')
return claimed
