-- watch: ARGV[3] node, [4] how long the registration holds (ms). Lists the
-- node in the topic's watchers (key w: node -> until when, ms of Redis
-- time) as having consumers or readers that wait for the topic's appends;
-- an append wakes the other nodes listed (append.lua). The list outlives
-- the topic, so a re-created topic keeps it. Returns 'OK'.
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', base .. 'w', ARGV[3], int(ms + tonumber(ARGV[4])))
return 'OK'
