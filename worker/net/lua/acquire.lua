-- Take one of a host's slots, or reserve the caller's turn in the host's queue.
-- KEYS: slots (zset token -> lease end), next allowed time, pause end, crawl delay, queue tail, latency (EWMA)
-- ARGV: token, concurrency limit, seconds between requests (0: no rate), lease seconds,
--       the caller's reservation (epoch seconds; 0: none), latency to assume before one is measured,
--       furthest reservation handed out (seconds)
-- Returns {granted (0/1), seconds to wait, reservation}: numbers as strings (Lua numbers become integers).
--
-- A busy host does not make its callers poll: each is told when its turn comes (the tail of the host's queue,
-- spaced by the rate or, when concurrency is the limit, by latency / limit), comes back then, and is served
-- ahead of callers without a reservation. Every time is Redis's own (TIME), so workers' clocks never matter.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit, interval, lease = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local reserved, max_reserve = tonumber(ARGV[5]), tonumber(ARGV[7])

local paused = tonumber(redis.call('GET', KEYS[3]) or '0')
if paused > now then return {0, tostring(paused - now), '0'} end

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local delay = tonumber(redis.call('GET', KEYS[4]) or '0')
if delay > interval then interval = delay end
local nxt = 0
if interval > 0 then nxt = tonumber(redis.call('GET', KEYS[2]) or '0') end
local tail = tonumber(redis.call('GET', KEYS[5]) or '0')
local busy = redis.call('ZCARD', KEYS[1]) >= limit

-- With a rate, callers without a reservation queue behind those with one; with concurrency only, a free slot
-- goes to whoever asks (order does not matter to the host, and an idle slot would be wasted).
local ready = not busy and nxt <= now and (reserved > 0 or interval <= 0 or tail <= now)
if ready then
  if interval > 0 then
    redis.call('SET', KEYS[2], tostring(now + interval), 'PX', math.ceil(interval * 1000) + 1000)
  end
  redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 1000) + 1000)
  return {1, '0', '0'}
end

-- When a slot is likely to free: the oldest request in flight ends about one latency after it started, and
-- the latency is at least how long that request has been going (a host slower than measured so far).
local latency = tonumber(redis.call('GET', KEYS[6]) or ARGV[6])
local free_at = now
if busy then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local started = tonumber(first[2]) - lease
  if now - started > latency then latency = now - started end
  free_at = math.max(now, started + latency)
end
local soon = math.max(free_at, nxt, now + 0.02)

if reserved > 0 then
  -- its turn came but the host is still busy (an answer slower than expected): it keeps its place and is told
  -- when the host should have room
  return {0, tostring(soon - now), tostring(reserved)}
end

-- A turn at the end of the host's queue, spaced by the rate or, when concurrency is the limit, by one slot's
-- share of the latency.
local spacing = interval
if busy and latency / limit > spacing then spacing = latency / limit end
local start = math.max(soon, tail)
if start - now > max_reserve then
  return {0, tostring(max_reserve), '0'}  -- too far ahead to hold a place: ask again then
end
redis.call('SET', KEYS[5], tostring(start + spacing), 'PX', math.ceil((start + spacing - now) * 1000) + 60000)
return {0, tostring(start - now), tostring(start)}
