-- Chunks the caller holds (chunk_cache.rs), by first offset, from a
-- hint argument: 'first,count,bytes,first offset of its append call,the
-- call's nonce' items separated by ';' ('' none).
local function parse_hints(arg)
  local hints = {}
  for first, n, size, call, nonce in string.gmatch(arg, '(%d+),(%d+),(%d+),(%d+),(%x+)') do
    first = tonumber(first)
    hints[first] = { first = first, n = tonumber(n), bytes = tonumber(size), call = call,
      nonce = nonce, hinted = true }
  end
  return hints
end

-- True when a hinted chunk is the one stored: its append call's nonce is
-- in bn at the call's first offset (not trimmed, not lost and stored anew
-- at the same offsets). The caller checks that the chunk lies within the
-- retained offsets.
local function proven(h)
  local at = redis.call('ZSCORE', base .. 'bn', h.nonce)
  return at and tonumber(at) == tonumber(h.call)
end

-- Claiming, shared by the claim script and an ack that claims next (see
-- their headers): expires leases that ran out, then leases due entries and
-- fresh events (filtered, held behind their key) to consumer `cid` within
-- its free slots, at most `most` and about `max_bytes` (a larger event goes
-- alone). Returns {'OK', now, next wake-up (-1: none; set by
-- claim_next_wake), more (0/1), lease deadline, dead-lettered by expiry
-- (set by claim_next_wake), then items: 'C', first offset, publish time,
-- record sizes, records (a run of a chunk whose records the items after it
-- reference); 'E', key, lease, attempt, offset, publish time, record;
-- 'H', first offset (a hinted chunk, whole: records with the caller);
-- 'R', key, lease, attempt, offset (record in the last chunk); 'G', lease,
-- first offset, count (that many first deliveries in a row under one batch
-- lease, keyed by their offsets, attempt 1, records in the last chunk)},
-- or nil when the consumer is not registered. A chunk of `hints` (see
-- parse_hints) that the claim takes whole is not read. The caller saves
-- the group, then calls claim_next_wake.
local function claim(G, cid, most, max_bytes, now, hints)
  local cv = redis.call('HGET', G.c, cid)
  if not cv then return nil end
  expire(G, now)
  local max, cur = string.match(cv, '^(%d+)|(%d+)|')
  local room = math.min(most, tonumber(max) - tonumber(cur) - (G.inflight[cid] or 0))
  local deadline = now + G.ack
  local out = {'OK', now, -1, 0, deadline, 0}
  local bytes = 0

  local handed = 0
  local function explicit(key, lease, attempt, offset, t, rec)
    local n = #out
    out[n + 1] = 'E'
    out[n + 2] = key
    out[n + 3] = lease
    out[n + 4] = attempt
    out[n + 5] = offset
    out[n + 6] = t
    out[n + 7] = rec
  end
  -- Events handed from one chunk in a row go out after one 'C' item with
  -- the part of the chunk from the first to the last of them (the whole
  -- chunk as stored when that is all of it).
  -- Run items: {key (nil: first deliveries, keyed by their offsets),
  -- lease, attempt, offset, count (of first deliveries)}.
  local run_ch, run = nil, {}
  local function flush()
    local ch = run_ch
    if not ch then return end
    local lo, hi = ch.n, 1
    for _, it in ipairs(run) do
      local i = it[4] - ch.first + 1
      if i < lo then lo = i end
      i = i + (it[5] or 1) - 1
      if i > hi then hi = i end
    end
    local n = #out
    if ch.hinted then
      out[n + 1] = 'H'
      out[n + 2] = ch.first
    elseif lo == 1 and hi == ch.n then
      out[n + 1] = 'C'
      out[n + 2] = ch.first
      out[n + 3] = ch.t
      out[n + 4] = ch.z
      out[n + 5] = ch.c
    else
      local pos = positions(ch)
      out[n + 1] = 'C'
      out[n + 2] = ch.first + lo - 1
      out[n + 3] = ch.t
      out[n + 4] = table.concat(ch.sizes, ',', lo, hi)
      out[n + 5] = string.sub(ch.c, pos[lo], pos[hi + 1] - 1)
    end
    for _, it in ipairs(run) do
      n = #out
      if it[1] == nil then
        out[n + 1] = 'G'
        out[n + 2] = it[2]
        out[n + 3] = it[4]
        out[n + 4] = it[5]
      else
        out[n + 1] = 'R'
        out[n + 2] = it[1]
        out[n + 3] = it[2]
        out[n + 4] = it[3]
        out[n + 5] = it[4]
      end
    end
    run_ch, run = nil, {}
  end
  local function join(ch, item)
    if run_ch and run_ch.first ~= ch.first then flush() end
    run_ch = ch
    run[#run + 1] = item
  end
  -- Counts n events of `size` bytes in all as handed.
  local function take(n, size)
    handed = handed + n
    bytes = bytes + size
    room = room - n
  end
  -- An entry's event with its record (rec) or in a chunk (ch).
  local function hand(key, lease, attempt, offset, t, size, rec, ch)
    take(1, size)
    if rec then
      flush()
      return explicit(key, lease, attempt, offset, t, rec)
    end
    join(ch, { key, lease, attempt, offset })
  end

  -- Entries and leases written once at the end, in one HSET and one ZADD
  -- (a fresh key is never read again by this script).
  local entries, leases = {}, {}
  local function give(key, en, offset, t, size, rec, ch)
    en.a = en.a + 1
    en.l = next_lease(G, false)
    en.d = deadline
    en.c = cid
    en.s = 'L'
    entries[#entries + 1] = key
    entries[#entries + 1] = pack_entry(en)
    leases[#leases + 1] = int(deadline)
    leases[#leases + 1] = key
    if en.a > 1 then count(G, 'redelivered') end
    hand(key, en.l, en.a, offset, t, size, rec, ch)
  end

  -- Events i..j of chunk ch as first deliveries (already taken). They
  -- share batch leases (see common.lua) of at most 128 keys each, so that
  -- an ack of one key (which reads and rewrites its batch) stays cheap; a
  -- batch is a list of ranges {first, last}, one range when the offsets
  -- follow on (a claim of every event, also across chunks), written once
  -- at the end.
  local batches = {}
  local function give_range(ch, i, j)
    while i <= j do
      local first = ch.first + i - 1
      local b = batches[#batches]
      if not b or b.n >= 128 then
        b = { lease = next_lease(G, true), n = 0, ranges = {} }
        batches[#batches + 1] = b
      end
      local k = math.min(j, i + 127 - b.n)
      local last = first + k - i
      local r = b.ranges[#b.ranges]
      if r and r[2] + 1 == first then
        r[2] = last
      else
        b.ranges[#b.ranges + 1] = { first, last }
      end
      b.n = b.n + k - i + 1
      local it = run[#run]
      if run_ch == ch and it and it[1] == nil and it[2] == b.lease and it[4] + it[5] == first then
        it[5] = it[5] + k - i + 1
      else
        join(ch, { nil, b.lease, 1, first, k - i + 1 })
      end
      i = k + 1
    end
  end

  local function full()
    return room <= 0 or bytes >= max_bytes
  end

  local function fits(size)
    return handed == 0 or bytes + size <= max_bytes
  end

  if not full() then
    -- A few more than the free slots: entries dropped here (too old, or
    -- their event gone) take no slot.
    local due = redis.call('ZRANGEBYSCORE', G.q, '-inf', now, 'LIMIT', 0, room + 64)
    for _, key in ipairs(due) do
      local v = redis.call('HGET', G.e, key)
      if not v then
        redis.call('ZREM', G.q, key)
      else
        local en = unpack_entry(v)
        local offset, t, size, rec, ch = event_at(G, key)
        if not offset or (not is_replay(key) and too_old(G, t, now)) then
          count(G, 'expired')
          remove_entry(G, key, en, now)
        elseif not fits(size) then
          out[4] = 1
          break
        else
          redis.call('ZREM', G.q, key)
          give(key, en, offset, t, size, rec, ch)
        end
      end
      if full() then break end
    end
  end

  if not full() and out[4] == 0 then
    if G.cursor < G.start then
      count(G, 'expired', G.start - G.cursor)
      G.cursor = G.start
    end
    local filter = compile_filter(G)
    -- Checks a group without an age limit or filter needs not make.
    local aged = G.maxage >= 0
    local scanned = 0
    if G.cursor < G.stop and not aged and not filter and not G.ordered then
      -- Every event goes: whole hinted chunks first, then whole runs of a
      -- chunk at once.
      local h = hints[G.cursor]
      while h and room >= h.n and bytes + h.bytes <= max_bytes and G.cursor + h.n <= G.stop
          and proven(h) do
        take(h.n, h.bytes)
        give_range(h, 1, h.n)
        G.cursor = G.cursor + h.n
        h = hints[G.cursor]
      end
      if not full() and G.cursor < G.stop then
        each_chunk(G.cursor, function(ch, i)
          local last = math.min(ch.n, G.stop - ch.first)
          local j = i
          -- All of a chunk in one step when it fits (no sizes to read).
          if i == 1 and last == ch.n and room >= ch.n and bytes + ch.len <= max_bytes then
            take(ch.n, ch.len)
            j = ch.n + 1
          end
          while j <= last and not full() do
            local size = ch.sizes[j]
            if not fits(size) then
              out[4] = 1
              break
            end
            take(1, size)
            j = j + 1
          end
          if j > i then
            give_range(ch, i, j - 1)
            G.cursor = ch.first + j - 1
          end
          return j > ch.n and not full() and out[4] == 0
        end)
      end
    elseif G.cursor < G.stop then
      each_event(G.cursor, function(offset, t, size, etype, key, ch, i)
        if offset >= G.stop or scanned >= 4096 then return false end
        if not fits(size) then
          out[4] = 1
          return false
        end
        G.cursor = offset + 1
        scanned = scanned + 1
        if aged and too_old(G, t, now) then
          count(G, 'expired')
        elseif filter and not wants(filter, etype) then
          count(G, 'filtered')
        else
          local okey = ''
          if G.ordered then okey = key end
          if okey == '' then
            take(1, size)
            give_range(ch, i, i)
          else
            local k = int(offset)
            local en = { a = 0, l = 0, d = 0, c = '', f = 0, s = 'R', k = okey }
            if redis.call('HEXISTS', G.h, okey) == 1 then
              en.s = 'B'
              redis.call('HSET', G.e, k, pack_entry(en))
              redis.call('RPUSH', G.w .. okey, k)
            else
              redis.call('HSET', G.h, okey, k)
              give(k, en, offset, t, size, nil, ch)
            end
          end
        end
        return not full()
      end)
    end
    if scanned >= 4096 and G.cursor < G.stop then out[4] = 1 end
  end

  if #entries > 0 then
    redis.call('HSET', G.e, unpack(entries))
    redis.call('ZADD', G.l, unpack(leases))
  end
  for _, b in ipairs(batches) do
    local lease, items = int(b.lease), {}
    for x, r in ipairs(b.ranges) do
      items[x] = r[1] == r[2] and int(r[1]) or int(r[1]) .. '-' .. int(r[2])
    end
    redis.call('HSET', G.k_, lease, pack_batch(deadline, table.concat(items, ','), cid))
    redis.call('ZADD', G.l, int(deadline), 'b' .. lease)
  end
  flush()
  count(G, 'delivered', handed)
  G.inflight[cid] = (G.inflight[cid] or 0) + handed
  return out
end

local function claim_next_wake(G, out)
  out[6] = G.dead
  local nl = redis.call('ZRANGE', G.l, 0, 0, 'WITHSCORES')
  local nq = redis.call('ZRANGE', G.q, 0, 0, 'WITHSCORES')
  if #nl > 0 then out[3] = tonumber(nl[2]) end
  if #nq > 0 and (out[3] < 0 or tonumber(nq[2]) < out[3]) then out[3] = tonumber(nq[2]) end
end
