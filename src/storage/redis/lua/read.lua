-- read: ARGV[3] first offset, [4] most events, [5] bytes (stop after the
-- event that reaches it). Returns {'OK', start, end, offset, publish time,
-- record, ...}, {'RANGE', start} when the offset was deleted, or {'GONE'}.
local m = redis.call('HMGET', KEYS[1], 'start', 'end')
if not m[1] then return {'GONE'} end
local start, stop = tonumber(m[1]), tonumber(m[2])
local from = tonumber(ARGV[3])
if from < start then return {'RANGE', start} end
local left, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {'OK', start, stop}
if left > 0 and budget > 0 and from < stop then
  each_event(from, function(offset, t, _, _, _, ch, i)
    if offset >= stop then return false end
    local rec = rec_of(ch, i)
    out[#out + 1] = offset
    out[#out + 1] = t
    out[#out + 1] = rec
    left = left - 1
    budget = budget - #rec
    return left > 0 and budget > 0
  end)
end
return out
