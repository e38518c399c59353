-- group_delete: ARGV[3] name. Deletes the group's state and dead letters;
-- its consumers (on every node) end. Returns {'OK', gid} or {'GONE'}.
local v = redis.call('HGET', base .. 'Gi', ARGV[3])
if not v then return {'GONE'} end
local gid = string.match(v, '^(%d+)')
drop_group_keys(gid)
redis.call('HDEL', base .. 'Gi', ARGV[3])
redis.call('HDEL', base .. 'G', ARGV[3])
redis.call('PUBLISH', chan, 'g\n' .. topic .. '\n' .. gid)
return {'OK', gid}
