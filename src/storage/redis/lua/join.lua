-- join: ARGV[3] gid, [4] topic generation, [5] consumer, [6] most leases,
-- [7] node. Registers the consumer. Returns {'OK'} or {'GONE'}.
local G = load_group(ARGV[3], ARGV[4])
if not G then return {'GONE'} end
redis.call('HSET', G.c, ARGV[5], ARGV[6] .. '|0|' .. ARGV[7])
return {'OK'}
