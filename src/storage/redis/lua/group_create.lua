-- group_create: ARGV[3] gid (from the registry's counter), [4] name, [5]
-- record (JSON), [6] start kind, [7] start value, [8] ack deadline µs, [9]
-- min backoff µs, [10] max backoff µs, [11] multiplier, [12] max attempts,
-- [13] ordered (0/1), [14] types, [15] patterns (see compile_filter), [16]
-- max message age µs (-1: none).
-- Returns {'OK', topic generation, start offset}, {'EXISTS'}, {'NOTOPIC'}
-- or {'RANGE', start, end}.
local gen = redis.call('HGET', KEYS[1], 'gen')
if not gen then return {'NOTOPIC'} end
local name = ARGV[4]
if redis.call('HEXISTS', base .. 'Gi', name) == 1 then return {'EXISTS'} end
local pos, start, stop = resolve(ARGV[6], ARGV[7])
if not pos then return {'RANGE', start, stop} end
local gid = ARGV[3]
redis.call('HSET', base .. 'Gi', name, gid .. '|' .. gen)
redis.call('HSET', base .. 'G', name, ARGV[5])
redis.call('HSET', base .. 'g:' .. gid, 'name', name, 'ack', ARGV[8], 'bmin', ARGV[9],
  'bmax', ARGV[10], 'bmul', ARGV[11], 'maxatt', ARGV[12], 'ordered', ARGV[13],
  'ft', ARGV[14], 'fp', ARGV[15], 'maxage', ARGV[16], 'cursor', int(pos), 'lseq', 0, 'lfloor', 1,
  'dlseq', 0, 'created', int(now_us()))
return {'OK', gen, pos}
