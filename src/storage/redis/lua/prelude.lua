-- Shared prelude of every topic script (each script's header states its
-- contract), followed by chunks.lua (stream entries), common.lua (group
-- state) and claiming.lua; conn.rs puts them together.
-- KEYS[1] is the topic's meta hash "<prefix>:{<topic>}:m"; every other key
-- of the topic is derived from it, so a script touches one hash slot only.
-- Numbers that can exceed 2^53 never pass through Lua: offsets, lease and
-- dead-letter ids stay far below it, and replay keys are strings ("r<id>").

local base = string.sub(KEYS[1], 1, -2)
local chan = ARGV[1]
local topic = ARGV[2]

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function int(x)
  return string.format('%d', x)
end

local function sid(offset)
  return string.format('%d-1', offset)
end
