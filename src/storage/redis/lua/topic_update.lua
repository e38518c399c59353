-- topic_update: ARGV[3] record read before (JSON), [4] new record, [5]
-- dedup window µs, [6] max bytes, [7] max age µs. Compare-and-set on the
-- record; applies retention at once. Returns {'OK'}, {'CHANGED'} or {'GONE'}.
local rec = redis.call('HGET', KEYS[1], 'rec')
if not rec then return {'GONE'} end
if rec ~= ARGV[3] then return {'CHANGED'} end
redis.call('HSET', KEYS[1], 'rec', ARGV[4], 'dedup', ARGV[5], 'maxbytes', ARGV[6], 'maxage', ARGV[7])
trim(now_us())
return {'OK'}
