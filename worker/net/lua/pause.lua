-- Pause a host: every request refused until then. Only ever extends a pause.
-- KEYS: pause end. ARGV: seconds. Returns the seconds left (a string).
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local seconds = tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + seconds > cur then
  redis.call('SET', KEYS[1], tostring(now + seconds), 'PX', math.ceil(seconds * 1000) + 1000)
  return tostring(seconds)
end
return tostring(cur - now)
