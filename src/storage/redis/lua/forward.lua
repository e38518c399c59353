-- forward: ARGV[3] gid, [4] topic generation, [5] highest dead-letter id
-- forwarded to the group's dead-letter topic, or -1 to only read it.
-- Never moves back. Returns {'OK', highest forwarded id, highest
-- dead-letter id given out} or {'GONE'}.
local G = load_group(ARGV[3], ARGV[4])
if not G then return {'GONE'} end
local current = tonumber(redis.call('HGET', G.k, 'dlfwd') or '0')
local upto = tonumber(ARGV[5])
if upto > current then
  redis.call('HSET', G.k, 'dlfwd', ARGV[5])
  current = upto
end
return {'OK', int(current), redis.call('HGET', G.k, 'dlseq') or '0'}
