-- dl_page: ARGV[3] gid, [4] topic generation, [5] after id (-1: from the
-- start), [6] '1' oldest first, [7] most entries, [8] about this many bytes,
-- [9] types (newline-separated; empty: all), [10] dead-lettered at or after
-- µs (-1), [11] before µs (-1). Returns {'OK', total matching, more (0/1),
-- id, metadata, event, ...} (metadata: attempts|first failure|last
-- failure|dead-lettered at|reason; event: offset|publish time|record) or
-- {'GONE'}. Without a filter the total is the queue's length; with one,
-- the whole queue is scanned.
local G = load_group(ARGV[3], ARGV[4])
if not G then return {'GONE'} end
local after, asc = tonumber(ARGV[5]), ARGV[6] == '1'
local left, budget = tonumber(ARGV[7]), tonumber(ARGV[8])
local types = nil
if ARGV[9] ~= '' then
  types = {}
  for t in string.gmatch(ARGV[9], '[^\n]+') do types[t] = true end
end
local from, to = tonumber(ARGV[10]), tonumber(ARGV[11])
local filtered = types or from >= 0 or to >= 0
local function selected(id)
  if not filtered then return true end
  if types and not types[redis.call('HGET', G.xt, id) or ''] then return false end
  if from >= 0 or to >= 0 then
    local x = redis.call('HGET', G.x, id)
    local at = tonumber(string.match(x, '^%d+|%d+|%d+|(%d+)|'))
    if from >= 0 and at < from then return false end
    if to >= 0 and at >= to then return false end
  end
  return true
end
local out = {'OK', 0, 0}
local total = 0
local lo, hi = '-inf', '+inf'
if after >= 0 then
  if asc then lo = '(' .. int(after) else hi = '(' .. int(after) end
end
local cursor_lo, cursor_hi = lo, hi
local done = false
while true do
  local ids
  if asc then
    ids = redis.call('ZRANGEBYSCORE', G.xz, cursor_lo, cursor_hi, 'LIMIT', 0, 256)
  else
    ids = redis.call('ZREVRANGEBYSCORE', G.xz, cursor_hi, cursor_lo, 'LIMIT', 0, 256)
  end
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    if selected(id) then
      if done then
        out[3] = 1
        if not filtered then break end
      else
        local ev = redis.call('HGET', G.xe, id) or ''
        out[#out + 1] = tonumber(id)
        out[#out + 1] = redis.call('HGET', G.x, id)
        out[#out + 1] = ev
        left = left - 1
        budget = budget - #ev
        if left <= 0 or budget <= 0 then done = true end
      end
      total = total + 1
    end
  end
  if done and out[3] == 1 and not filtered then break end
  local last = ids[#ids]
  if asc then cursor_lo = '(' .. last else cursor_hi = '(' .. last end
end
if filtered then out[2] = total else out[2] = redis.call('ZCARD', G.xz) end
return out
