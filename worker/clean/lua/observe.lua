-- Learn one page of one site: its distinct line, template, label and slot hashes, and the site's headlines.
-- Every key is the site's own (a Redis Cluster slot per site); the fleet-wide prior is fed by the caller from
-- this script's reply (worker.clean.fleet), never from here.
--
-- KEYS: page sets of the site's live buckets (current first), the current bucket's line hash, headline zset.
-- ARGV: 1 page digest, 2 max pages, 3 max lines, 4 bucket ttl, 5 now, 6 headline ttl, 7 max headlines,
--       8 share at (pages), 9 n fields, 10 n shareable, then the fields (the shareable ones first), then the
--       headline members.
-- Returns {status, hashes...}: status 1 when the page was learnt, 0 when it was already known, 2 when the
-- bucket is full of pages; the hashes are the shareable fields whose count in the current bucket has just
-- reached "share at": lines that have become boilerplate on this site, once per site and bucket.
local n_buckets = #KEYS - 2
local lines_key = KEYS[n_buckets + 1]
local titles_key = KEYS[n_buckets + 2]
local page = ARGV[1]
local max_pages = tonumber(ARGV[2])
local max_lines = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local now = tonumber(ARGV[5])
local title_ttl = tonumber(ARGV[6])
local max_titles = tonumber(ARGV[7])
local share_at = tonumber(ARGV[8])
local n_fields = tonumber(ARGV[9])
local n_share = tonumber(ARGV[10])
local first = 11

if #ARGV >= first + n_fields then
  for i = first + n_fields, #ARGV do
    redis.call('ZADD', titles_key, now, ARGV[i])
  end
  redis.call('ZREMRANGEBYSCORE', titles_key, '-inf', now - title_ttl)
  local extra = redis.call('ZCARD', titles_key) - max_titles
  if extra > 0 then
    redis.call('ZREMRANGEBYRANK', titles_key, 0, extra - 1)
  end
  redis.call('EXPIRE', titles_key, math.ceil(title_ttl))
end

for i = 1, n_buckets do
  if redis.call('SISMEMBER', KEYS[i], page) == 1 then
    return {0}
  end
end
if redis.call('SCARD', KEYS[1]) >= max_pages then
  return {2}
end
redis.call('SADD', KEYS[1], page)
redis.call('EXPIRE', KEYS[1], ttl)

local reply = {1}
local size = redis.call('HLEN', lines_key)
for i = first, first + n_fields - 1 do
  local count = 0
  if size < max_lines then
    count = redis.call('HINCRBY', lines_key, ARGV[i], 1)
    if count == 1 then
      size = size + 1
    end
  elseif redis.call('HEXISTS', lines_key, ARGV[i]) == 1 then
    count = redis.call('HINCRBY', lines_key, ARGV[i], 1)
  end
  if count == share_at and i < first + n_share then
    reply[#reply + 1] = ARGV[i]
  end
end
if n_fields > 0 then
  redis.call('EXPIRE', lines_key, ttl)
end
return reply
