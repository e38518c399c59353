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
while left > 0 and budget > 0 and from < stop do
  local r = redis.call('XRANGE', base .. 's', sid(from), '+', 'COUNT', math.min(left, 64))
  if #r == 0 then break end
  for _, item in ipairs(r) do
    local f = fields(item[2])
    local offset = offset_of(item[1])
    out[#out + 1] = offset
    out[#out + 1] = f.t
    out[#out + 1] = f.e
    from = offset + 1
    left = left - 1
    budget = budget - #f.e
    if left <= 0 or budget <= 0 then break end
  end
end
return out
