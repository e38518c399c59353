-- topic_create: ARGV[3] record (JSON), [4] dedup window µs, [5] max bytes
-- (-1: none), [6] max age µs (-1: none). Returns {'OK', generation} or
-- {'EXISTS'}. The generation counter outlives the topic, so a re-created
-- topic never has the generation of an earlier one.
if redis.call('EXISTS', KEYS[1]) == 1 then return {'EXISTS'} end
local gen = redis.call('INCR', base .. 'gen')
redis.call('HSET', KEYS[1], 'gen', gen, 'rec', ARGV[3], 'dedup', ARGV[4],
  'maxbytes', ARGV[5], 'maxage', ARGV[6], 'start', 0, 'end', 0, 'bytes', 0,
  'last', 0, 'published', 0)
return {'OK', gen}
