-- trim: applies the topic's retention now. Returns {'OK', first retained
-- offset} or {'GONE'}.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'GONE'} end
trim(now_us())
return {'OK', tonumber(redis.call('HGET', KEYS[1], 'start'))}
