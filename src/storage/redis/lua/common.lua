-- Group state shared by the topic scripts: loading and saving a group,
-- batch leases, entries, filters, retries and dead letters, expiry.

-- A group's state hash and settings; nil when the group (or the topic
-- generation it was created in) no longer exists.
local function load_group(gid, gen)
  local m = redis.call('HMGET', KEYS[1], 'gen', 'start', 'end')
  if not m[1] or m[1] ~= gen then return nil end
  local g = base .. 'g:' .. gid
  local s = redis.call('HMGET', g, 'ack', 'bmin', 'bmax', 'bmul', 'maxatt',
    'ordered', 'lseq', 'lfloor', 'cursor', 'ft', 'fp', 'name', 'maxage')
  if not s[1] then return nil end
  return {
    id = gid, k = g, e = g .. ':e', q = g .. ':q', l = g .. ':l', h = g .. ':h',
    c = g .. ':c', x = g .. ':x', xe = g .. ':xe', xt = g .. ':xt', xz = g .. ':xz',
    w = g .. ':w:', k_ = g .. ':k',
    ack = tonumber(s[1]), bmin = tonumber(s[2]), bmax = tonumber(s[3]),
    bmul = tonumber(s[4]), maxatt = tonumber(s[5]), ordered = s[6] == '1',
    lseq = tonumber(s[7]), lfloor = tonumber(s[8]), cursor = tonumber(s[9]),
    ft = s[10] or '', fp = s[11] or '', name = s[12], maxage = tonumber(s[13] or '-1'),
    start = tonumber(m[2]), stop = tonumber(m[3]),
    n = {}, inflight = {}, woke = false, dead = 0, batches = {},
  }
end

local function count(G, field, by)
  G.n[field] = (G.n[field] or 0) + (by or 1)
end

-- Leases: batch leases are odd, entry leases even (so an ack of an entry
-- lease never looks for a batch; entries of format 1 may hold odd ones).
local function next_lease(G, batch)
  G.lseq = G.lseq + 1
  if (G.lseq % 2 == 1) ~= batch then G.lseq = G.lseq + 1 end
  return G.lseq
end

-- Batch leases: the first deliveries without a key hold that one claim
-- handed to one consumer share a lease and a record (up to 128 keys),
-- k: lease -> 'deadline|keys|consumer', and one member 'b<lease>' of l
-- (score = deadline). keys is comma-separated, each item a key or a range
-- 'first-last' of keys (since format 4 a claim writes runs of consecutive
-- keys as ranges). Such keys have no entry in e until something other than
-- an ack happens to them (they are taken out of the batch then). Batches
-- read by a script are cached in G.batches (false: none) and written back
-- by flush_batches.
local function pack_batch(deadline, keys, consumer)
  return int(deadline) .. '|' .. keys .. '|' .. consumer
end

-- A batch record; a single range stays unexpanded (b.range: {first, last})
-- until batch_keys needs its keys one by one.
local function unpack_batch(v)
  local d, list, c = string.match(v, '^(%d+)|([%d,-]*)|(.*)$')
  local b = { d = tonumber(d), c = c, n = 0, dirty = false }
  local lo, hi = string.match(list, '^(%d+)-(%d+)$')
  if lo then
    b.range = { tonumber(lo), tonumber(hi) }
    b.n = b.range[2] - b.range[1] + 1
    return b
  end
  b.keys = {}
  for item in string.gmatch(list, '[^,]+') do
    local first, last = string.match(item, '^(%d+)-(%d+)$')
    if first then
      for k = tonumber(first), tonumber(last) do
        b.keys[int(k)] = true
        b.n = b.n + 1
      end
    else
      b.keys[item] = true
      b.n = b.n + 1
    end
  end
  return b
end

-- The keys of a batch as a set (key -> true).
local function batch_keys(b)
  if not b.keys then
    b.keys = {}
    for k = b.range[1], b.range[2] do b.keys[int(k)] = true end
    b.range = nil
  end
  return b.keys
end

local function batch_of(G, lease)
  local b = G.batches[lease]
  if b == nil then
    local v = redis.call('HGET', G.k_, int(lease))
    b = v and unpack_batch(v) or false
    G.batches[lease] = b
  end
  return b
end

-- Takes `key` out of batch `b` (of lease `lease`) as a leased entry of
-- attempt 1; the entry is not stored anywhere until the caller stores it.
local function unbatch(b, key, lease)
  batch_keys(b)[key] = nil
  b.n = b.n - 1
  b.dirty = true
  return { a = 1, l = lease, d = b.d, c = b.c, f = 0, s = 'L', k = '', batch = true }
end

local function flush_batches(G)
  for lease, b in pairs(G.batches) do
    if b and b.dirty then
      local field = int(lease)
      if b.n <= 0 then
        redis.call('HDEL', G.k_, field)
        redis.call('ZREM', G.l, 'b' .. field)
      else
        local keys = {}
        for k in pairs(batch_keys(b)) do keys[#keys + 1] = k end
        redis.call('HSET', G.k_, field, pack_batch(b.d, table.concat(keys, ','), b.c))
      end
      b.dirty = false
    end
  end
end

-- Writes back what a script changed in the group's state hash. A consumer
-- of another node than `node` that got credit back needs a wake-up.
local function save_group(G, node)
  flush_batches(G)
  redis.call('HSET', G.k, 'lseq', int(G.lseq), 'cursor', int(G.cursor))
  for field, by in pairs(G.n) do
    if by ~= 0 then redis.call('HINCRBY', G.k, field, by) end
  end
  for cid, delta in pairs(G.inflight) do
    local v = delta ~= 0 and redis.call('HGET', G.c, cid)
    if v then
      local max, cur, owner = string.match(v, '^(%d+)|(%d+)|(.*)$')
      cur = math.max(0, tonumber(cur) + delta)
      redis.call('HSET', G.c, cid, max .. '|' .. int(cur) .. '|' .. owner)
      if delta < 0 and owner ~= node then G.woke = true end
    end
  end
end

-- Entries: attempts|lease|deadline|consumer|first failure|state|ordering key
-- state R: due in q; L: leased (in l); B: waiting behind its key.
local function unpack_entry(v)
  local a, l, d, c, f, s, k = string.match(v, '^(%d+)|(%d+)|(%d+)|([^|]*)|(%d+)|(%a)|(.*)$')
  return { a = tonumber(a), l = tonumber(l), d = tonumber(d), c = c, f = tonumber(f), s = s, k = k }
end

local function pack_entry(en)
  return string.format('%d|%d|%d|%s|%d|%s|%s', en.a, en.l, en.d, en.c, en.f, en.s, en.k)
end

local function is_replay(key)
  return string.byte(key, 1) == 114 -- 'r'
end

-- Whether an event published at `t` (µs, a string) is past the group's
-- max message age (groups created before the setting have none).
local function too_old(G, t, now)
  return G.maxage >= 0 and tonumber(t) < now - G.maxage
end

-- The event of an entry: offset, publish time and record; nil when
-- retention deleted it.
local function event_of(G, key)
  if is_replay(key) then
    local v = redis.call('HGET', G.xe, string.sub(key, 2))
    if not v then return nil end
    local a = string.find(v, '|', 1, true)
    local b = string.find(v, '|', a + 1, true)
    return tonumber(string.sub(v, 1, a - 1)), string.sub(v, a + 1, b - 1), string.sub(v, b + 1)
  end
  local ch = chunk_at(tonumber(key))
  if not ch then return nil end
  local i = tonumber(key) - ch.first + 1
  return tonumber(key), ch.t, rec_of(ch, i), ch.types[i]
end

-- Where the event of an entry is, without cutting its record out of a
-- chunk: offset, publish time, record size, then the record (a replay) or
-- its chunk and index; nil when retention deleted it.
local function event_at(G, key)
  if is_replay(key) then
    local offset, t, rec = event_of(G, key)
    if not offset then return nil end
    return offset, t, #rec, rec
  end
  local offset = tonumber(key)
  local ch = chunk_at(offset)
  if not ch then return nil end
  local i = offset - ch.first + 1
  return offset, ch.t, ch.sizes[i], nil, ch, i
end

-- Filter: exact types (ft, newline-separated) and patterns (fp, one per
-- line, '>' already expanded to '*.#' and runs of '#' merged), matched by
-- stepping every pattern's states at once over the type's segments: linear
-- in the length of the type, whatever the pattern.
local function compile_filter(G)
  if G.ft == '' and G.fp == '' then return nil end
  local types = {}
  for t in string.gmatch(G.ft, '[^\n]+') do types[t] = true end
  local pats = {}
  for p in string.gmatch(G.fp, '[^\n]+') do
    local steps = {}
    for seg in string.gmatch(p, '[^.]+') do steps[#steps + 1] = seg end
    pats[#pats + 1] = steps
  end
  return { types = types, pats = pats }
end

local function pattern_matches(steps, segs)
  local n = #steps
  local live = { [1] = true }
  local function close(set)
    for i = 1, n do
      if set[i] and steps[i] == '#' then set[i + 1] = true end
    end
  end
  close(live)
  for _, seg in ipairs(segs) do
    local nxt, any = {}, false
    for i = 1, n do
      if live[i] then
        local st = steps[i]
        if st == '#' then nxt[i] = true; any = true
        elseif st == '*' or st == seg then nxt[i + 1] = true; any = true end
      end
    end
    if not any then return false end
    close(nxt)
    live = nxt
  end
  return live[n + 1] == true
end

local function wants(filter, etype)
  if not filter then return true end
  if filter.types[etype] then return true end
  if #filter.pats == 0 then return false end
  local segs = {}
  local pos = 1
  while true do
    local dot = string.find(etype, '.', pos, true)
    if not dot then segs[#segs + 1] = string.sub(etype, pos); break end
    segs[#segs + 1] = string.sub(etype, pos, dot - 1)
    pos = dot + 1
  end
  for _, steps in ipairs(filter.pats) do
    if pattern_matches(steps, segs) then return true end
  end
  return false
end

-- min(max, min * multiplier^(attempt - 1)), µs.
local function backoff(G, attempt)
  local e = math.min(math.max(attempt - 1, 0), 1000)
  local wait = G.bmin * (G.bmul ^ e)
  if wait ~= wait or wait >= G.bmax then return G.bmax end
  return math.floor(wait)
end

-- Per-key ordering: an entry is done, so the next event of its key may go.
local function release_key(G, key, en, now)
  if not G.ordered or en.k == '' or is_replay(key) then return end
  local holder = redis.call('HGET', G.h, en.k)
  if holder ~= key then
    redis.call('LREM', G.w .. en.k, 1, key)
    return
  end
  local nxt = redis.call('LPOP', G.w .. en.k)
  if not nxt then
    redis.call('HDEL', G.h, en.k)
    return
  end
  redis.call('HSET', G.h, en.k, nxt)
  local v = redis.call('HGET', G.e, nxt)
  if v then
    local ne = unpack_entry(v)
    ne.s = 'R'
    redis.call('HSET', G.e, nxt, pack_entry(ne))
    redis.call('ZADD', G.q, int(now), nxt)
    G.woke = true
  end
end

local function remove_entry(G, key, en, now)
  redis.call('HDEL', G.e, key)
  redis.call('ZREM', G.q, key)
  redis.call('ZREM', G.l, key)
  release_key(G, key, en, now)
end

-- Ends the lease of a leased entry, freeing its consumer's slot.
local function drop_lease(G, key, en)
  if en.s == 'L' then
    if not en.batch then redis.call('ZREM', G.l, key) end
    G.inflight[en.c] = (G.inflight[en.c] or 0) - 1
    en.s = 'R'
  end
end

-- Moves an entry to the dead-letter queue (a replay goes back under its
-- own id). Returns false when retention already deleted its event.
-- x: id -> attempts|first failure|last failure|dead-lettered at|reason;
-- xe: id -> offset|publish time|record; xz: queued ids (score = id).
local function dead_letter(G, key, en, reason, now)
  local id
  if is_replay(key) then
    id = string.sub(key, 2)
    remove_entry(G, key, en, now)
  else
    local offset, t, rec, etype = event_of(G, key)
    remove_entry(G, key, en, now)
    if not offset then count(G, 'expired'); return false end
    id = tostring(redis.call('HINCRBY', G.k, 'dlseq', 1))
    redis.call('HSET', G.xe, id, int(offset) .. '|' .. t .. '|' .. rec)
    redis.call('HSET', G.xt, id, etype)
  end
  redis.call('HSET', G.x, id, string.format('%d|%d|%d|%d|%s', en.a, en.f, now, now, reason))
  redis.call('ZADD', G.xz, id, id)
  count(G, 'dead_lettered')
  G.dead = G.dead + 1
  return true
end

-- A failed attempt of an entry whose lease has ended: retry after `delay`
-- (µs; nil: the group's backoff), or dead-letter it when asked to or out of
-- attempts.
local function fail(G, key, en, delay, reason, dead, now)
  if en.f == 0 then en.f = now end
  if dead or (G.maxatt > 0 and en.a >= G.maxatt) then
    dead_letter(G, key, en, reason, now)
    return
  end
  local wait = delay or backoff(G, en.a)
  en.s = 'R'
  redis.call('HSET', G.e, key, pack_entry(en))
  redis.call('ZADD', G.q, int(now + wait), key)
  if wait == 0 then G.woke = true end
end

-- Leases running out: retried after backoff, or dead-lettered.
local function expire(G, now)
  -- At most 256 leases per call (a batch may hold many: the rest of it
  -- stays for the next call).
  local budget = 256
  local function lapse(key, en)
    drop_lease(G, key, en)
    count(G, 'expired_leases')
    fail(G, key, en, nil, 'ack deadline exceeded', false, now)
    budget = budget - 1
  end
  local due = redis.call('ZRANGEBYSCORE', G.l, '-inf', now, 'LIMIT', 0, 256)
  for _, key in ipairs(due) do
    if budget <= 0 then break end
    if string.byte(key, 1) == 98 then -- 'b': a batch (flush_batches removes it when empty)
      local lease = tonumber(string.sub(key, 2))
      local b = batch_of(G, lease)
      if b then
        for k in pairs(batch_keys(b)) do
          if budget <= 0 then break end
          lapse(k, unbatch(b, k, lease))
        end
      else
        redis.call('ZREM', G.l, key)
      end
    else
      local v = redis.call('HGET', G.e, key)
      if v then
        lapse(key, unpack_entry(v))
      else
        redis.call('ZREM', G.l, key)
      end
    end
  end
end

local function wake(G)
  if G.woke then redis.call('PUBLISH', chan, 'g\n' .. topic .. '\n' .. G.id) end
end

-- Checks the lease `lease` of entry `key`: 'O' (current), 'S' (an older
-- lease of a pending entry), 'A' (the entry is done), 'U' (not issued, or
-- forgotten by a seek). Returns the entry too when it is pending; a current
-- lease of a batch is taken out of it (en.batch: stored nowhere yet).
local function current_lease(G, key, lease)
  if lease % 2 == 1 and lease >= G.lfloor and lease <= G.lseq then
    local b = batch_of(G, lease)
    if b and batch_keys(b)[key] then return 'O', unbatch(b, key, lease) end
  end
  local v = redis.call('HGET', G.e, key)
  if not v then
    if is_replay(key) then
      if lease > 0 and lease <= G.lseq then return 'A' end
      return 'U'
    end
    -- A lease from before a seek (whose key may be pending again, in a
    -- batch) is unknown, as for keys with an entry.
    if lease < G.lfloor then return 'U' end
    if tonumber(key) < G.cursor then return 'A' end
    return 'U'
  end
  if lease < G.lfloor or lease > G.lseq then return 'U' end
  local en = unpack_entry(v)
  if en.s == 'L' and en.l == lease then return 'O', en end
  return 'S', en
end

-- The offset a position names: E (earliest), L (latest), O <offset>,
-- T <µs>. nil and the retained range when an offset is outside it.
local function resolve(kind, value)
  local m = redis.call('HMGET', KEYS[1], 'start', 'end')
  local start, stop = tonumber(m[1]), tonumber(m[2])
  if kind == 'E' then return start end
  if kind == 'L' then return stop end
  if kind == 'O' then
    local o = tonumber(value)
    if o < start or o > stop then return nil, start, stop end
    return o
  end
  local b = redis.call('ZRANGEBYSCORE', base .. 'b', value, '+inf', 'LIMIT', 0, 1)
  if #b == 0 then return stop end
  return math.max(tonumber(string.match(b[1], '^(%d+)')), start)
end

-- Deletes every key of group `gid`.
local function drop_group_keys(gid)
  local g = base .. 'g:' .. gid
  for _, k in ipairs(redis.call('HKEYS', g .. ':h')) do
    redis.call('UNLINK', g .. ':w:' .. k)
  end
  redis.call('UNLINK', g, g .. ':e', g .. ':q', g .. ':l', g .. ':k', g .. ':h', g .. ':c',
    g .. ':x', g .. ':xe', g .. ':xt', g .. ':xz')
end

-- Retention: drops the oldest append batches (b: member "<first offset,
-- 20 digits>|<bytes>", score = publish time) older than the age limit, and
-- while the topic is over its byte limit (keeping the newest batch).
local function trim(now)
  local m = redis.call('HMGET', KEYS[1], 'maxage', 'maxbytes', 'bytes', 'start', 'end')
  local maxage, maxbytes = tonumber(m[1]), tonumber(m[2])
  if maxage < 0 and maxbytes < 0 then return end
  local bytes, start, stop = tonumber(m[3]), tonumber(m[4]), tonumber(m[5])
  local b = base .. 'b'
  local newstart = start
  for _ = 1, 1000 do
    local first = redis.call('ZRANGE', b, 0, 1, 'WITHSCORES')
    if #first == 0 then break end
    local size, nonce, chunks = string.match(first[1], '^%d+|(%d+)|?([^|]*)|?(%d*)$')
    local old = maxage >= 0 and tonumber(first[2]) < now - maxage
    local big = maxbytes >= 0 and bytes > maxbytes and #first > 2
    if not (old or big) then break end
    redis.call('ZREM', b, first[1])
    -- Its records (format 5; a batch of an older format has none there).
    for i = 1, tonumber(chunks) or 0 do
      redis.call('HDEL', base .. 'x', payload_field(nonce, i), payload_field(nonce, i, true))
    end
    bytes = bytes - tonumber(size)
    if #first > 2 then
      newstart = tonumber(string.match(first[3], '^(%d+)'))
    else
      newstart = stop
    end
  end
  if newstart ~= start then
    redis.call('XTRIM', base .. 's', 'MINID', sid(newstart))
    -- Also what an older release's trim left.
    redis.call('ZREMRANGEBYSCORE', base .. 'bn', '-inf', '(' .. int(newstart))
    chunk_cache = {}
    redis.call('HSET', KEYS[1], 'start', int(newstart), 'bytes', int(math.max(bytes, 0)))
  end
end
