-- Give a slot back and learn how long the host takes to answer.
-- KEYS: slots (zset token -> lease end), latency (EWMA of seconds per request)
-- ARGV: token, lease seconds (the one the slot was taken with)
-- The request started at (lease end - lease); its duration feeds the host's latency, which spaces the turns
-- handed out while the host is at its concurrency limit. Returns 1 if the slot was still held.
local lease_end = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not lease_end then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local took = now - (tonumber(lease_end) - tonumber(ARGV[2]))
if took < 0 then took = 0 end
local old = tonumber(redis.call('GET', KEYS[2]) or tostring(took))
redis.call('SET', KEYS[2], tostring(0.7 * old + 0.3 * took), 'EX', 86400)
return 1
