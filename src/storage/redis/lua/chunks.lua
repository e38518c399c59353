-- Stream entries (see keys.rs). Since format 3 an entry is a chunk: the
-- events of one append call (in runs of at most 128 events and about 64 KiB), id
-- '<first offset>-1', fields in this order: n count, t publish time, z
-- record sizes (comma-separated), then the records: since format 5 p, the
-- records' length and their field in the topic's payload hash x
-- ('<length>|<nonce>:<chunk>', written by the appending node with a plain
-- HSET, so Lua never makes a string of them on append), before that c,
-- the records themselves (concatenated); then y types and yz their sizes,
-- k keys and kz their sizes ('' sizes: every event has that one type or
-- key). Entries of formats 1 and 2 hold one event: t, y, k, e.

-- The payload hash field of chunk `i` (from 1) of the append call with
-- `nonce`; `repacked` when duplicates left the chunk (format 5).
local function payload_field(nonce, i, repacked)
  return nonce .. ':' .. i .. (repacked and ':d' or '')
end

-- The pieces of a packed list; `sizes` '' means `n` times `packed`.
local function split(packed, sizes, n)
  local list = {}
  if sizes == '' then
    for i = 1, n do list[i] = packed end
    return list
  end
  local at = 1
  for size in string.gmatch(sizes, '%d+') do
    local z = tonumber(size)
    list[#list + 1] = string.sub(packed, at, at + z - 1)
    at = at + z
  end
  return list
end

-- A chunk's lists, made on first use (a claim that takes whole chunks
-- never needs them): sizes (numbers), types and keys, by index (1-based);
-- and its records c, read from the payload hash on first use (format 5).
local chunk_lists = {
  __index = function(ch, field)
    local v
    if field == 'sizes' then
      v = {}
      for size in string.gmatch(ch.z, '%d+') do v[#v + 1] = tonumber(size) end
    elseif field == 'types' then
      v = split(ch.y, ch.yz, ch.n)
    elseif field == 'keys' then
      v = split(ch.k, ch.kz, ch.n)
    elseif field == 'c' then
      v = redis.call('HGET', base .. 'x', ch.ref)
      if not v then error('the records of the chunk at offset ' .. ch.first .. ' are missing') end
    else
      return nil
    end
    rawset(ch, field, v)
    return v
  end,
}

-- A stream entry as a chunk: first offset, count n, publish time t,
-- records c (concatenated; read when first used) of len bytes and their
-- sizes z (as text), types y and keys k packed (their sizes yz, kz), and
-- the lists above. Records stay in one string; rec_of cuts one out (every
-- string made in Lua costs a pass over its bytes).
local function chunk_of(item)
  local kv = item[2]
  local ch = { first = tonumber(string.sub(item[1], 1, -3)) }
  if kv[1] == 't' then
    ch.n, ch.t, ch.c, ch.len = 1, kv[2], kv[8], #kv[8]
    ch.z, ch.sizes = tostring(#kv[8]), { #kv[8] }
    ch.types, ch.keys = { kv[4] }, { kv[6] }
    return ch
  end
  ch.n, ch.t, ch.z = tonumber(kv[2]), kv[4], kv[6]
  if kv[7] == 'p' then
    local len, ref = string.match(kv[8], '^(%d+)|(.*)$')
    ch.len, ch.ref = tonumber(len), ref
  else
    ch.c, ch.len = kv[8], #kv[8]
  end
  ch.y, ch.yz, ch.k, ch.kz = kv[10], kv[12], kv[14], kv[16]
  return setmetatable(ch, chunk_lists)
end

-- Where each record of a chunk starts in c, then its end.
local function positions(ch)
  local pos = ch.pos
  if not pos then
    pos = { 1 }
    for j, size in ipairs(ch.sizes) do pos[j + 1] = pos[j] + size end
    ch.pos = pos
  end
  return pos
end

-- The record at index `i` of a chunk.
local function rec_of(ch, i)
  local pos = positions(ch)
  return string.sub(ch.c, pos[i], pos[i + 1] - 1)
end

-- Chunks read in this script, the last 8 (retries come in runs).
local chunk_cache = {}
local function cached(offset)
  for _, ch in ipairs(chunk_cache) do
    if ch.first <= offset and offset < ch.first + ch.n then return ch end
  end
  return nil
end
local function remember(ch)
  if #chunk_cache >= 8 then table.remove(chunk_cache, 1) end
  chunk_cache[#chunk_cache + 1] = ch
end

-- The chunk holding `offset`, else the last one before it; nil when there
-- is none (retention deleted what came before).
local function chunk_from(offset)
  local ch = cached(offset)
  if ch then return ch end
  local r = redis.call('XREVRANGE', base .. 's', sid(offset), '-', 'COUNT', 1)
  if #r == 0 then return nil end
  ch = chunk_of(r[1])
  remember(ch)
  return ch
end

-- The chunk holding `offset`; nil when retention deleted it.
local function chunk_at(offset)
  local ch = chunk_from(offset)
  if ch and offset < ch.first + ch.n then return ch end
  return nil
end

-- Calls visit(chunk, index) for the chunks from the one holding `offset`
-- on, in order, with the index of `offset` in the first of them (1 in the
-- others), until it returns false or the stream ends.
local function each_chunk(offset, visit)
  local function run(ch)
    if visit(ch, math.max(offset - ch.first, 0) + 1) == false then
      if not cached(ch.first) then remember(ch) end
      return false
    end
    return true
  end
  local ch = chunk_from(offset)
  local id = '-'
  if ch then
    if not run(ch) then return end
    id = '(' .. sid(ch.first)
  end
  while true do
    local r = redis.call('XRANGE', base .. 's', id, '+', 'COUNT', 2)
    if #r == 0 then return end
    for _, item in ipairs(r) do
      if not run(chunk_of(item)) then return end
      id = '(' .. item[1]
    end
  end
end

-- Calls visit(offset, publish time, record size, type, key, chunk, index)
-- for the events from `offset` on, in order, until it returns false or the
-- stream ends.
local function each_event(offset, visit)
  each_chunk(offset, function(ch, from)
    for i = from, ch.n do
      if visit(ch.first + i - 1, ch.t, ch.sizes[i], ch.types[i], ch.keys[i], ch, i) == false then
        return false
      end
    end
    return true
  end)
end
