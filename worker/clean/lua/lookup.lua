-- Read what a site's memory knows about one page's fingerprints, in every live bucket (read only).
-- The tables are those of observe.lua (layout there and in worker.clean.memory); a key of an earlier layout
-- reads as empty.
--
-- KEYS: page tables of the site's live buckets (current first), then their line tables, in the same order.
-- ARGV: 1 page fingerprint, then the fields.
-- Returns {observed, counts...}: observed 1 when the page is in one of the page tables; then, bucket after
-- bucket, the count of each field in that bucket's line table (0 when absent).
local W = 16
local SLOT = 8
local HEADER = 8
local EMPTY = string.rep('\0', 6)

local n_buckets = #KEYS / 2
local sizes = {}

local function slots(key)
  local m = sizes[key]
  if m == nil then
    local len = redis.pcall('STRLEN', key)
    if type(len) ~= 'number' or len < HEADER + SLOT then
      m = 0
    else
      m = (len - HEADER) / SLOT
    end
    sizes[key] = m
  end
  return m
end

local function count_of(key, fp)
  local m = slots(key)
  if m == 0 or fp == EMPTY then
    return 0
  end
  local a, b, c = string.byte(fp, 1, 3)
  local h = (a * 65536 + b * 256 + c) % (m - W + 1)
  local window = redis.call('GETRANGE', key, HEADER + SLOT * h, HEADER + SLOT * (h + W) - 1)
  for j = 0, W - 1 do
    local s = string.sub(window, SLOT * j + 1, SLOT * j + 6)
    if s == fp then
      return (struct.unpack('>I2', window, SLOT * j + 7))
    end
    if s == EMPTY then
      return 0
    end
  end
  return 0
end

local observed = 0
for i = 1, n_buckets do
  if count_of(KEYS[i], ARGV[1]) > 0 then
    observed = 1
    break
  end
end
local reply = {observed}
for i = n_buckets + 1, 2 * n_buckets do
  for f = 2, #ARGV do
    reply[#reply + 1] = count_of(KEYS[i], ARGV[f])
  end
end
return reply
