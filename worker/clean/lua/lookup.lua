-- Read what a site's memory knows about one page's fingerprints, in every live bucket (read only).
-- The tables are those of observe.lua (layout there and in worker.clean.memory).
--
-- KEYS: page tables of the site's live buckets (current first), then their line tables, in the same order.
-- ARGV: 1 page fingerprint, then the fields.
-- Returns {observed, counts...}: observed 1 when the page is in one of the page tables; then, bucket after
-- bucket, the count of each field in that bucket's line table (0 when absent).
local W = 16
local SLOT = 8
local HEADER = 8
local EMPTY = string.rep('\0', 6)

local SMALL = 2048  -- slots up to which a table is read whole (16 KB): one call instead of one per field

local n_buckets = #KEYS / 2
local tables = {}

local function table_of(key)
  local t = tables[key]
  if t == nil then
    t = {m = 0}
    local len = redis.call('STRLEN', key)
    if len >= HEADER + SLOT then
      t.m = (len - HEADER) / SLOT
      if t.m <= SMALL then
        t.data = redis.call('GET', key)
      end
    end
    tables[key] = t
  end
  return t
end

local function count_of(key, fp)
  local t = table_of(key)
  if t.m == 0 or fp == EMPTY then
    return 0
  end
  local a, b, c = string.byte(fp, 1, 3)
  local h = (a * 65536 + b * 256 + c) % (t.m - W + 1)
  local window
  if t.data then
    window = string.sub(t.data, HEADER + SLOT * h + 1, HEADER + SLOT * (h + W))
  else
    window = redis.call('GETRANGE', key, HEADER + SLOT * h, HEADER + SLOT * (h + W) - 1)
  end
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
