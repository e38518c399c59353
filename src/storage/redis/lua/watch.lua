-- watch: ARGV[3] node, [4] how long the registration holds (ms). Lists the
-- node in the topic's watchers (key w: node -> until when, ms of Redis
-- time) as having consumers or followers that wait for the topic's appends;
-- an append wakes the other nodes listed (append.lua). The list outlives
-- the topic (a re-created topic keeps it) and lapses with its last entry.
-- Returns {1} when the node was not listed (or its entry had lapsed):
-- appends since may not have woken it. Else {0}.
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local w, hold = base .. 'w', tonumber(ARGV[4])
local was = tonumber(redis.call('HGET', w, ARGV[3]) or '0')
redis.call('HSET', w, ARGV[3], int(ms + hold))
redis.call('PEXPIRE', w, hold)
if was < ms then return {1} end
return {0}
