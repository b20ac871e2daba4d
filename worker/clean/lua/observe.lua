-- Learn one page of one site: its distinct line, template, label, slot and headline fingerprints.
-- Every key is the site's own (a Redis Cluster slot per site); the fleet-wide prior is fed by the caller from
-- this script's reply (worker.clean.fleet), never from here.
--
-- Each key is a compact counting table in one string (worker.clean.memory describes the layout): an 8-byte
-- header (slots in use, big-endian), then 8-byte slots of a 6-byte fingerprint and a 2-byte count. A
-- fingerprint sits in the first free slot of the W slots from its home slot; the table starts small and
-- doubles (up to its largest size) when three quarters are in use or a window is full. Nothing is ever deleted
-- from a table (it expires whole), so a lookup stops at the first empty slot. At its largest size a full line
-- table makes room by replacing a fingerprint seen on one page only: the long tail of lines that never repeat.
--
-- KEYS: page tables of the site's live buckets (current first), the current bucket's line table.
-- ARGV: 1 page fingerprint, 2 max pages, 3 largest page table (slots), 4 largest line table (slots),
--       5 ttl of the current bucket's keys (seconds), 6 share at (pages), 7 n fields, 8 n shareable, then the
--       fields (the shareable ones first), then the headline fingerprints.
-- Returns {status, fingerprints...}: status 1 when the page was learnt, 0 when it was already known, 2 when
-- the bucket is full of pages; the fingerprints are the shareable fields whose count in the current bucket
-- has just reached "share at": lines that have become boilerplate on this site, once per site and bucket.
local W = 16
local SLOT = 8
local HEADER = 8
local MIN_SLOTS = 32
local EMPTY = string.rep('\0', 6)

local n_buckets = #KEYS - 1
local lines_key = KEYS[n_buckets + 1]
local page = ARGV[1]
local max_pages = tonumber(ARGV[2])
local max_page_slots = tonumber(ARGV[3])
local max_line_slots = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local share_at = tonumber(ARGV[6])
local n_fields = tonumber(ARGV[7])
local n_share = tonumber(ARGV[8])
local first = 9

-- What this call knows of each table it touched: its slots (m), the slots in use (n), and whether n must be
-- written back to the header at the end (one write per table, not one per new fingerprint).
local tables = {}

-- The table at key, {m = 0} when there is none.
local function table_of(key)
  local t = tables[key]
  if t == nil then
    local len = redis.call('STRLEN', key)
    t = {m = 0, n = 0, dirty = false}
    if len >= HEADER + SLOT then
      t.m = (len - HEADER) / SLOT
      t.n = struct.unpack('>I4', redis.call('GETRANGE', key, 0, 3))
    end
    tables[key] = t
  end
  return t
end

local function home(fp, m)
  local a, b, c = string.byte(fp, 1, 3)
  return (a * 65536 + b * 256 + c) % (m - W + 1)
end

-- The table at key, re-laid on new_m slots (its header written with the slots in use).
local function rebuild(key, t, new_m)
  local data = t.m > 0 and redis.call('GET', key) or ''
  local placed = {}
  local n = 0
  for i = 0, t.m - 1 do
    local at = HEADER + SLOT * i
    local fp = string.sub(data, at + 1, at + 6)
    if fp ~= EMPTY then
      local h = home(fp, new_m)
      for j = h, h + W - 1 do
        if placed[j] == nil then
          placed[j] = string.sub(data, at + 1, at + SLOT)
          n = n + 1
          break
        end
      end
    end
  end
  local parts = {struct.pack('>I4I4', n, 0)}
  local empty = string.rep('\0', SLOT)
  for i = 0, new_m - 1 do
    parts[#parts + 1] = placed[i] or empty
  end
  redis.call('SET', key, table.concat(parts), 'KEEPTTL')
  t.m, t.n, t.dirty = new_m, n, false
end

-- One more page for fp in the table at key; returns its count (0: not taken, the table is full).
-- evict: whether a fingerprint seen on one page only may give its slot up once the table is at its largest.
local function add(key, fp, max_slots, evict)
  if fp == EMPTY then
    return 0
  end
  local t = table_of(key)
  if t.m == 0 then
    rebuild(key, t, MIN_SLOTS)
  end
  while true do
    local h = home(fp, t.m)
    local window = redis.call('GETRANGE', key, HEADER + SLOT * h, HEADER + SLOT * (h + W) - 1)
    local free, once = nil, nil
    for j = 0, W - 1 do
      local s = string.sub(window, SLOT * j + 1, SLOT * j + 6)
      if s == fp then
        local count = struct.unpack('>I2', window, SLOT * j + 7)
        if count < 65535 then
          count = count + 1
          redis.call('SETRANGE', key, HEADER + SLOT * (h + j) + 6, struct.pack('>I2', count))
        end
        return count
      end
      if s == EMPTY then
        free = j
        break
      end
      if once == nil and struct.unpack('>I2', window, SLOT * j + 7) == 1 then
        once = j
      end
    end
    local can_grow = 2 * t.m <= max_slots
    if free ~= nil and (t.n < 0.75 * t.m or not can_grow) then
      redis.call('SETRANGE', key, HEADER + SLOT * (h + free), fp .. struct.pack('>I2', 1))
      t.n, t.dirty = t.n + 1, true
      return 1
    end
    if can_grow then
      rebuild(key, t, 2 * t.m)
    elseif evict and once ~= nil then
      redis.call('SETRANGE', key, HEADER + SLOT * (h + once), fp .. struct.pack('>I2', 1))
      return 1
    else
      return 0
    end
  end
end

local function count_of(key, fp)
  local t = table_of(key)
  if t.m == 0 or fp == EMPTY then
    return 0
  end
  local h = home(fp, t.m)
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

local function write_headers()
  for key, t in pairs(tables) do
    if t.dirty then
      redis.call('SETRANGE', key, 0, struct.pack('>I4', t.n))
      t.dirty = false
    end
  end
end

for i = 1, n_buckets do
  if count_of(KEYS[i], page) > 0 then
    return {0}
  end
end
local pages_key = KEYS[1]
if table_of(pages_key).n >= max_pages or add(pages_key, page, max_page_slots, false) == 0 then
  return {2}
end
redis.call('EXPIRE', pages_key, ttl)

local reply = {1}
for i = first, first + n_fields - 1 do
  local count = add(lines_key, ARGV[i], max_line_slots, true)
  if count == share_at and i < first + n_share then
    reply[#reply + 1] = ARGV[i]
  end
end
for i = first + n_fields, #ARGV do
  add(lines_key, ARGV[i], max_line_slots, true)
end
write_headers()
if #ARGV >= first then
  redis.call('EXPIRE', lines_key, ttl)
end
return reply
