-- Count, in the fleet-wide prior's current bucket, one more site on which each given line hash has become
-- boilerplate. Touches the fleet's key only (never a site's): see worker.clean.fleet.
--
-- KEYS: 1 the fleet's current bucket (hash: line hash -> sites).
-- ARGV: 1 max fields, 2 ttl, then the line hashes.
-- A full bucket still counts the hashes it holds and takes no new ones, so memory stays bounded.
local max_fields = tonumber(ARGV[1])
local size = redis.call('HLEN', KEYS[1])
for i = 3, #ARGV do
  if size < max_fields then
    if redis.call('HINCRBY', KEYS[1], ARGV[i], 1) == 1 then
      size = size + 1
    end
  elseif redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('HINCRBY', KEYS[1], ARGV[i], 1)
  end
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return size
