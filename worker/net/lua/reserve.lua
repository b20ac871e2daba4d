-- Hand out the host's turns for a poll's new pages at once, before they are sent.
-- KEYS: slots (zset token -> lease end), next allowed time, pause end, crawl delay, queue tail, latency (EWMA)
-- ARGV: pages, concurrency limit, seconds between requests (0: no rate), lease seconds,
--       latency to assume before one is measured, furthest reservation handed out (seconds)
-- Returns Redis's clock, then one offset per page (seconds from then; '-1': no turn given), all as strings.
--
-- A poll fans out all its pages of a host together; sent at once, all but the host's free slots would be
-- turned away and sent again later (acquire.lua). Here the host's queue is played forward instead: each slot
-- frees one latency after its request started, requests are spaced by the rate, and each page is given the
-- earliest turn left, so it is sent with that delay and comes when the host has room. The queue's tail moves
-- past the turns given, so the host's other callers queue behind them. A paused host gives no turns.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n, limit, interval, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local max_reserve = tonumber(ARGV[6])
local out = {tostring(now)}

local paused = tonumber(redis.call('GET', KEYS[3]) or '0')
if paused > now then
  for i = 1, n do out[i + 1] = '-1' end
  return out
end

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local delay = tonumber(redis.call('GET', KEYS[4]) or '0')
if delay > interval then interval = delay end
local nxt = now
if interval > 0 then nxt = math.max(now, tonumber(redis.call('GET', KEYS[2]) or '0')) end
local tail = tonumber(redis.call('GET', KEYS[5]) or '0')
local latency = tonumber(redis.call('GET', KEYS[6]) or ARGV[5])

-- When each slot is free: an idle one now, one in flight one latency after its request started (never before
-- now); the callers already queued (the tail) come first. Only the earliest slots matter, as many as pages.
local width = math.min(limit, n)
local free = {}
for _ = 1, math.min(math.max(limit - redis.call('ZCARD', KEYS[1]), 0), width) do free[#free + 1] = now end
if #free < width then
  local inflight = redis.call('ZRANGE', KEYS[1], 0, width - #free - 1, 'WITHSCORES')
  for i = 2, #inflight, 2 do
    free[#free + 1] = math.max(now, tonumber(inflight[i]) - lease + latency)
  end
end
for i = 1, #free do free[i] = math.max(free[i], tail) end

local given = false
for i = 2, n + 1 do
  local k = 1
  for j = 2, #free do if free[j] < free[k] then k = j end end
  local turn = math.max(free[k], nxt)
  if turn - now > max_reserve then
    out[i] = '-1'  -- too far ahead to hold a place: the page asks when it comes
  else
    out[i] = tostring(turn - now)
    free[k] = turn + latency
    if interval > 0 then nxt = turn + interval end
    given = true
  end
end

if given then
  -- newcomers queue behind the turns given, at the host's next free slot
  local after = free[1]
  for j = 2, #free do if free[j] < after then after = free[j] end end
  after = math.max(after, nxt)
  if after > tail and after > now then
    redis.call('SET', KEYS[5], tostring(after), 'PX', math.ceil((after - now) * 1000) + 60000)
  end
end
return out
