"""``BucketSet``: a compact expiring set of ids (the "seen" entries, the "published" articles).

Redis 7.0 has no per-field expiry, so ids go into small hashes ("generation buckets") that expire as a whole.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Sequence

import redis

from worker.core.keys import SLOT_GROUP_BITS, key
from worker.core.redisconn import one_trip
from worker.core.settings import get_settings
from worker.dedup.fingerprint import id64, text_of

_SAFE_NAME = re.compile(r"[a-z0-9._\-]{1,40}")

# --- generation buckets ------------------------------------------------------------------------------------

FIELD_BITS = 48  # the field is the id's low 48 bits, the bucket its top bits: ~62 bits of identity survive
DEFAULT_BUCKET_BITS = 14  # 16 384 buckets: < 64 bytes/id from ~50 000 ids, < 128 entries/hash to ~1.3 M ids
MIN_BUCKET_BITS = 6
MAX_BUCKET_BITS = 20
TARGET_PER_BUCKET = 64  # mean entries aimed for; Redis keeps a hash compact (listpack) up to 128 by default
GROWTH_MARGIN = 1.5  # room for a generation busier than the last
_SAMPLES = 32


class Buckets:
    """The layout shared by ``BucketSet`` and the LSH bands: a 64-bit hash -> (keys to check, field).

    Generation ``g = floor(now / (ttl/2))``; an entry is written to generation g and looked up in g and g-1,
    so it is remembered between ttl/2 and ttl. The number of buckets of a generation is fixed when the
    generation is first used, from the previous generation's size (sampled), and stored in a small meta key so
    every worker agrees on it; busy deployments get more buckets, and every hash stays small enough for
    listpack.
    """

    def __init__(self, r: redis.Redis, name: str, ttl_seconds: float) -> None:
        """On a cluster, an id's keys go to its slot group (``worker.core.keys.slot_group``)."""
        if not _SAFE_NAME.fullmatch(name):
            raise ValueError(f"bucket set name must match {_SAFE_NAME.pattern}: {name!r}")
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self.r = r
        self.name = name
        self.ttl = ttl_seconds
        self.half = ttl_seconds / 2
        self.expire = max(1, math.ceil(ttl_seconds))
        self._bits: dict[int, int] = {}
        # On a cluster, buckets of one slot group must be told apart by the group: so at least a group's worth
        # of buckets, and an id's buckets of every generation then share its group's slot.
        self._min_bits = SLOT_GROUP_BITS if get_settings().redis_cluster else 0

    def generation(self, now: float | None = None) -> int:
        return math.floor((time.time() if now is None else now) / self.half)

    def _meta(self, gen: int) -> str:
        return key(self.name, "m", str(gen))

    def bits(self, gen: int) -> int:
        """Bucket bits of a generation; decided once (SET NX) by whichever worker uses it first."""
        cached = self._bits.get(gen)
        if cached is not None:
            return cached
        raw = self.r.get(self._meta(gen))
        if raw is None:
            # The meta key outlives every data key of its generation (those live at most 1.5 ttl). SET NX
            # then GET: of two workers choosing at once, both end up with the first one's choice.
            self.r.set(self._meta(gen), self._choose_bits(gen), nx=True, ex=2 * self.expire)
            raw = self.r.get(self._meta(gen))
        bits = DEFAULT_BUCKET_BITS if raw is None else int(text_of(raw))  # None only if it expired meanwhile
        bits = max(bits, self._min_bits)
        if len(self._bits) > 8:  # only the current and previous generations are ever asked for again
            self._bits.clear()
        self._bits[gen] = bits
        return bits

    def _choose_bits(self, gen: int) -> int:
        prev_raw = self.r.get(self._meta(gen - 1))
        if prev_raw is None:
            return DEFAULT_BUCKET_BITS
        prev_bits = max(int(text_of(prev_raw)), self._min_bits)
        rng = random.Random(gen)
        sample = [rng.randrange(1 << prev_bits) for _ in range(_SAMPLES)]
        pipe = self.r.pipeline(transaction=False)
        for bucket in sample:
            pipe.hlen(self._data(gen - 1, bucket, prev_bits))
        lengths = pipe.execute()
        estimate = sum(int(n) for n in lengths) / len(sample) * (1 << prev_bits)
        if estimate <= 0:
            return DEFAULT_BUCKET_BITS
        wanted = math.ceil(math.log2(max(1.0, estimate * GROWTH_MARGIN / TARGET_PER_BUCKET)))
        return max(MIN_BUCKET_BITS, min(MAX_BUCKET_BITS, wanted))

    def _data(self, gen: int, bucket: int, bits: int) -> str:
        # on a cluster, the top bits of its ids: their slot group
        tag = format(bucket >> (bits - SLOT_GROUP_BITS), "03x") if self._min_bits else None
        return key(self.name, str(gen), format(bucket, "x"), tag=tag)

    def locate(self, h: int, gen: int) -> tuple[list[str], str]:
        """``([current key, previous key], field)`` of a 64-bit hash."""
        field = str(h & ((1 << FIELD_BITS) - 1))  # an integer string: listpack stores it as an int
        keys = []
        for g in (gen, gen - 1):
            bits = self.bits(g)
            keys.append(self._data(g, h >> (64 - bits), bits))
        return keys, field

    def group(self, h: int) -> int:
        """Which slot group a hash's keys are in on a cluster (0 for all on one node)."""
        return h >> (64 - SLOT_GROUP_BITS) if self._min_bits else 0


# KEYS: the distinct keys. ARGV: ttl, then "cur prev field " per id (indexes into KEYS): one string, because
# packing three arguments per id costs the client more than the whole script costs Redis.
_ADD = """
local ttl = tonumber(ARGV[1])
local out = {}
local touched = {}
local live = {}  -- previous-generation keys that exist at all: most lookups there can be skipped
for cur, prev, field in string.gmatch(ARGV[2], '(%d+) (%d+) (%d+)') do
  cur, prev = tonumber(cur), tonumber(prev)
  if live[prev] == nil then live[prev] = redis.call('EXISTS', KEYS[prev]) == 1 end
  if live[prev] and redis.call('HEXISTS', KEYS[prev], field) == 1 then
    out[#out + 1] = 0
  else
    local added = redis.call('HSETNX', KEYS[cur], field, 1)
    out[#out + 1] = added
    if added == 1 then touched[cur] = true end
  end
end
for k = 1, #KEYS do
  if touched[k] then redis.call('EXPIRE', KEYS[k], ttl) end
end
return out
"""

_ADD_BATCH = 1000  # ids per script call: amortises the round trip without stalling Redis for long


class BucketSet:
    """A compact expiring set of ids (~15-60 bytes of Redis memory per id, see ``ops/bench/dedup_memory.py``).

    An id is remembered for between ``ttl/2`` and ``ttl`` seconds after it was added. Article ids (16 hex
    characters) are used as they are; any other id is hashed to 64 bits.
    """

    def __init__(self, r: redis.Redis, name: str, ttl_seconds: float) -> None:
        self.r = r
        self.name = name
        self.ttl = ttl_seconds
        self._layout = Buckets(r, name, ttl_seconds)
        self._add = r.register_script(_ADD)

    def location(self, id_: str) -> tuple[list[str], str]:
        """``(keys, field)`` of an id, for a caller's own Lua script that must check-and-set atomically with
        something else (``worker/publish/writer.py``: the "published" memory together with XADD).

        The id is present if ``HEXISTS key field`` is 1 for *any* of ``keys`` (all must be checked: the
        current and the previous generation). To add it, write ``keys[0]`` only and refresh its expiry::

            for i = 1, nkeys do
              if redis.call('HEXISTS', KEYS[i], field) == 1 then return 0 end  -- already there
            end
            redis.call('HSET', KEYS[1], field, 1)
            redis.call('EXPIRE', KEYS[1], ttl)  -- ttl = ceil(BucketSet.ttl), whole seconds
            -- ... the rest of the atomic step (XADD) ...

        Pass all keys as KEYS (never build them in Lua). Ask again for every operation: the keys change
        with the generation (every ttl/2).
        """
        return self._layout.locate(id64(id_), self._layout.generation())

    def add_many(self, ids: Sequence[str]) -> list[bool]:
        """Add ids; True where an id was not there before. Atomic per id: of two workers adding the same id
        at the same time, exactly one gets True. On a cluster the ids go in one script call per slot group
        (sent together, a round trip per node); on one node, in one call."""
        gen = self._layout.generation()
        result: list[bool] = []
        for start in range(0, len(ids), _ADD_BATCH):
            groups: dict[int, tuple[dict[str, int], list[str], list[int]]] = {}
            for i, id_ in enumerate(ids[start : start + _ADD_BATCH]):
                h = id64(id_)
                keys, field = self._layout.locate(h, gen)
                index, records, order = groups.setdefault(self._layout.group(h), ({}, [], []))
                records.append(f"{index.setdefault(keys[0], len(index) + 1)} "
                               f"{index.setdefault(keys[1], len(index) + 1)} {field} ")
                order.append(i)
            calls = [(list(index), [self._layout.expire, "".join(records)]) for index, records, _ in groups.values()]
            if len(calls) == 1:
                replies = [self._add(keys=calls[0][0], args=calls[0][1])]
            else:
                pipe = one_trip(self.r)
                for keys, args in calls:
                    self._add(keys=keys, args=args, client=pipe)
                replies = pipe.execute()
            added: list[bool] = [False] * sum(len(order) for _, _, order in groups.values())
            for (_, _, order), reply in zip(groups.values(), replies, strict=True):
                for i, x in zip(order, reply, strict=True):
                    added[i] = bool(x)
            result += added
        return result

    def contains_many(self, ids: Sequence[str]) -> list[bool]:
        if not ids:
            return []
        gen = self._layout.generation()
        pipe = self.r.pipeline(transaction=False)
        for id_ in ids:
            keys, field = self._layout.locate(id64(id_), gen)
            for k in keys:
                pipe.hexists(k, field)
        found = pipe.execute()
        return [bool(found[2 * i]) or bool(found[2 * i + 1]) for i in range(len(ids))]

    def discard(self, id_: str) -> None:
        keys, field = self.location(id_)
        pipe = self.r.pipeline(transaction=False)
        for k in keys:
            pipe.hdel(k, field)
        pipe.execute()


