-- group_update: ARGV[3] name, [4] record read before, [5] new record, then
-- the settings of group_create's [8]..[16] at [6]..[14]. Compare-and-set
-- on the record; wakes the group's consumers. Returns {'OK'}, {'CHANGED'}
-- or {'GONE'}.
local name = ARGV[3]
local rec = redis.call('HGET', base .. 'G', name)
if not rec then return {'GONE'} end
if rec ~= ARGV[4] then return {'CHANGED'} end
local gid = string.match(redis.call('HGET', base .. 'Gi', name), '^(%d+)')
redis.call('HSET', base .. 'G', name, ARGV[5])
redis.call('HSET', base .. 'g:' .. gid, 'ack', ARGV[6], 'bmin', ARGV[7], 'bmax', ARGV[8],
  'bmul', ARGV[9], 'maxatt', ARGV[10], 'ordered', ARGV[11], 'ft', ARGV[12], 'fp', ARGV[13],
  'maxage', ARGV[14])
redis.call('PUBLISH', chan, 'g\n' .. topic .. '\n' .. gid)
return {'OK'}
