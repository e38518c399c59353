-- topic_delete: deletes the topic with its events, groups and dead letters
-- and tells every node (its streams and readers end). Returns {'OK'} or {'GONE'}.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'GONE'} end
local ids = redis.call('HVALS', base .. 'Gi')
for _, v in ipairs(ids) do
  drop_group_keys(string.match(v, '^(%d+)'))
end
redis.call('UNLINK', KEYS[1], base .. 's', base .. 'b', base .. 'bn', base .. 'd', base .. 'dz',
  base .. 'G', base .. 'Gi', base .. 'x')
redis.call('PUBLISH', chan, 'd\n' .. topic)
return {'OK'}
