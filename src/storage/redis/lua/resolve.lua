-- resolve: ARGV[3] kind (E, L, O, T), [4] value. Returns {'OK', offset},
-- {'RANGE', start, end} or {'GONE'}.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'GONE'} end
local pos, start, stop = resolve(ARGV[3], ARGV[4])
if not pos then return {'RANGE', start, stop} end
return {'OK', pos}
