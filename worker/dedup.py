"""Identity and same-story detection, shared by every worker through Redis.

Three tools live here:

* ``BucketSet``: a compact expiring set of ids (the "seen" entries, the "published" articles). Redis 7.0 has
  no per-field expiry, so ids go into small hashes ("generation buckets") that expire as a whole.
* ``claim`` / ``release``: a per-article lock so two workers never process the same article at the same time.
* ``StoryIndex``: recognises the same story arriving under another URL: same normalised title, the same or a
  nearly identical text (MinHash + LSH), or a URL that already belongs to another article.

The pure logic (normalisation, shingling, signatures) is kept apart from the Redis I/O so it can be tested and
benchmarked on its own. Every key is built with ``worker.keys.key``; text that comes from the outside world
(titles, texts, URLs, guids) only ever appears in a key hashed.
"""

from __future__ import annotations

import enum
import hashlib
import math
import random
import re
import time
import unicodedata
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import redis

from worker.keys import digest, key
from worker.settings import Settings, get_settings
from worker.urls import InvalidURL, canonicalize

# --- pure logic: ids, titles, texts, signatures ------------------------------------------------------------

_HEX16 = re.compile(r"[0-9a-f]{16}")
_SAFE_NAME = re.compile(r"[a-z0-9._\-]{1,40}")

MIN_TITLE_WORDS = 4  # shorter titles ("Live updates", "Opinion") are too generic to identify a story
MIN_EXACT_WORDS = 10  # below this, an identical text says nothing (empty extractions, one-line stubs)
MIN_NEAR_WORDS = 50  # below this, shingle sets are too small for a meaningful Jaccard estimate
SHINGLE_WORDS = 5
NUM_PERM = 128
BANDS = 16
ROWS = NUM_PERM // BANDS  # 16 bands x 8 rows: P(candidate) is 0.994 at Jaccard 0.85, 0.06 at 0.5

_M64 = (1 << 64) - 1


def id64(value: str) -> int:
    """64 bits identifying an id: an article id (16 hex characters) is used as is, anything else is hashed."""
    if _HEX16.fullmatch(value):
        return int(value, 16)
    raw = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(raw, "big")


def normalize_title(title: str) -> str | None:
    """NFKC, casefold, punctuation stripped, whitespace collapsed; None when fewer than 4 words remain."""
    text = unicodedata.normalize("NFKC", title or "").casefold()
    # Apostrophes and dots vanish ("U.S." = "US", "don't" = "dont"); any other punctuation separates words.
    text = re.sub(r"['‘’`´.]", "", text)
    text = re.sub(r"[\W_]+", " ", text).strip()
    return text if len(text.split(" ")) >= MIN_TITLE_WORDS and text else None


_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """The text's words, NFKC-normalised and case-folded: layout, punctuation and case never matter."""
    return _WORD.findall(unicodedata.normalize("NFKC", text or "").casefold())


def text_digest(tokens: Sequence[str]) -> str:
    """Identity of a text's word sequence (32 hex characters)."""
    return digest(" ".join(tokens), 32)


def _constants(label: str, n: int) -> npt.NDArray[np.uint64]:
    # Derived from blake2b rather than a NumPy RNG: signatures stored in Redis are compared across workers,
    # so the constants must not depend on the NumPy version a worker happens to run.
    out = [int.from_bytes(hashlib.blake2b(f"{label}:{i}".encode(), digest_size=8).digest(), "big")
           for i in range(n)]
    return np.array(out, dtype=np.uint64)


_PERM_A = _constants("minhash-a", NUM_PERM) | np.uint64(1)  # odd multipliers (multiply-shift hashing)
_PERM_B = _constants("minhash-b", NUM_PERM)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_SM1 = np.uint64(0xBF58476D1CE4E5B9)
_SM2 = np.uint64(0x94D049BB133111EB)
_CHUNK = 2048  # rows per block: bounds the temporary (rows x 128 x 8 bytes) for very long texts


def shingle_hashes(tokens: Sequence[str], size: int = SHINGLE_WORDS) -> npt.NDArray[np.uint64]:
    """One well-mixed 64-bit hash per run of ``size`` consecutive words."""
    n = len(tokens) - size + 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64)
    # crc32 per word is stable across processes (unlike hash()) and ~10x cheaper than a cryptographic hash.
    w = np.fromiter((zlib.crc32(t.encode("utf-8", "surrogatepass")) for t in tokens), dtype=np.uint64,
                    count=len(tokens))
    h = w[:n].copy()
    for j in range(1, size):
        h = h * _MIX + w[j : j + n]  # wraps mod 2**64, which is what we want
    # splitmix64 finaliser: spreads every input bit over the whole word before the permutations.
    h ^= h >> np.uint64(30)
    h *= _SM1
    h ^= h >> np.uint64(27)
    h *= _SM2
    h ^= h >> np.uint64(31)
    return h


def minhash(tokens: Sequence[str]) -> npt.NDArray[np.uint32]:
    """MinHash signature (``NUM_PERM`` 32-bit values) of the text's word shingles."""
    h = shingle_hashes(tokens)
    sig = np.full(NUM_PERM, 0xFFFFFFFFFFFFFFFF, dtype=np.uint64)
    for start in range(0, len(h), _CHUNK):
        # multiply-add-shift: one cheap universal hash per permutation, top 32 bits kept. The shift is
        # monotonic, so it is applied once to the minima rather than to the whole (rows x 128) block.
        block = h[start : start + _CHUNK, None] * _PERM_A
        block += _PERM_B
        np.minimum(sig, block.min(axis=0), out=sig)
    return (sig >> np.uint64(32)).astype(np.uint32)


def band_hashes(sig: npt.NDArray[np.uint32]) -> list[int]:
    """One 64-bit hash per LSH band (band index included, so equal rows in different bands never meet)."""
    data = sig.astype("<u4").tobytes()
    step = ROWS * 4
    return [int.from_bytes(hashlib.blake2b(bytes([b]) + data[b * step : (b + 1) * step], digest_size=8)
                           .digest(), "big") for b in range(BANDS)]


def signature_bytes(sig: npt.NDArray[np.uint32]) -> bytes:
    """The stored form of a signature (little-endian uint32s; the Lua verifier compares 4-byte slices)."""
    return sig.astype("<u4").tobytes()


def estimated_jaccard(a: npt.NDArray[np.uint32], b: npt.NDArray[np.uint32]) -> float:
    return float(np.count_nonzero(a == b)) / len(a)


# A same title counts only when the texts overlap at least this much (estimated Jaccard of 5-word shingles):
# distinct articles score ~0.0-0.1, wire copies under an edited layout 0.5-1.0.
TITLE_MIN_SIMILARITY = 0.3


@dataclass(frozen=True)
class Fingerprint:
    """Everything the story index needs to know about one article, computed without Redis."""

    title: str | None  # normalised title, None when too short to identify a story
    word_count: int
    exact: str | None  # digest of the word sequence; None when the text is too short
    signature: npt.NDArray[np.uint32] | None  # None when the text is too short for near-duplicate detection

    @classmethod
    def of(cls, title: str, text: str) -> Fingerprint:
        tokens = words(text)
        n = len(tokens)
        return cls(
            title=normalize_title(title),
            word_count=n,
            exact=text_digest(tokens) if n >= MIN_EXACT_WORDS else None,
            signature=minhash(tokens) if n >= MIN_NEAR_WORDS else None,
        )

    def same_story(self, other: Fingerprint, threshold: float) -> str | None:
        """The reason two fingerprints are one story, or None (the pure form of the Redis check)."""
        if (self.title is not None and self.title == other.title and self.signature is not None
                and other.signature is not None
                and estimated_jaccard(self.signature, other.signature) >= TITLE_MIN_SIMILARITY):
            return "title"
        if self.exact is not None and self.exact == other.exact:
            return "exact_text"
        if (self.signature is not None and other.signature is not None
                and estimated_jaccard(self.signature, other.signature) >= threshold):
            return "near_text"
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- generation buckets ------------------------------------------------------------------------------------

FIELD_BITS = 48  # the field is the id's low 48 bits, the bucket its top bits: ~62 bits of identity survive
DEFAULT_BUCKET_BITS = 14  # 16 384 buckets: < 64 bytes/id from ~50 000 ids, < 128 entries/hash to ~1.3 M ids
MIN_BUCKET_BITS = 6
MAX_BUCKET_BITS = 20
TARGET_PER_BUCKET = 64  # mean entries aimed for; Redis keeps a hash compact (listpack) up to 128 by default
GROWTH_MARGIN = 1.5  # room for a generation busier than the last
_SAMPLES = 32


class _Buckets:
    """The layout shared by ``BucketSet`` and the LSH bands: a 64-bit hash -> (keys to check, field).

    Generation ``g = floor(now / (ttl/2))``; an entry is written to generation g and looked up in g and g-1,
    so it is remembered between ttl/2 and ttl. The number of buckets of a generation is fixed when the
    generation is first used, from the previous generation's size (sampled), and stored in a small meta key so
    every worker agrees on it; busy deployments get more buckets, and every hash stays small enough for
    listpack.
    """

    def __init__(self, r: redis.Redis, name: str, ttl_seconds: float) -> None:
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
        bits = DEFAULT_BUCKET_BITS if raw is None else int(_text(raw))  # None only if it expired meanwhile
        if len(self._bits) > 8:  # only the current and previous generations are ever asked for again
            self._bits.clear()
        self._bits[gen] = bits
        return bits

    def _choose_bits(self, gen: int) -> int:
        prev_raw = self.r.get(self._meta(gen - 1))
        if prev_raw is None:
            return DEFAULT_BUCKET_BITS
        prev_bits = int(_text(prev_raw))
        rng = random.Random(gen)
        sample = [rng.randrange(1 << prev_bits) for _ in range(_SAMPLES)]
        pipe = self.r.pipeline(transaction=False)
        for bucket in sample:
            pipe.hlen(self._data(gen - 1, bucket))
        lengths = pipe.execute()
        estimate = sum(int(n) for n in lengths) / len(sample) * (1 << prev_bits)
        if estimate <= 0:
            return DEFAULT_BUCKET_BITS
        wanted = math.ceil(math.log2(max(1.0, estimate * GROWTH_MARGIN / TARGET_PER_BUCKET)))
        return max(MIN_BUCKET_BITS, min(MAX_BUCKET_BITS, wanted))

    def _data(self, gen: int, bucket: int) -> str:
        return key(self.name, str(gen), format(bucket, "x"))

    def locate(self, h: int, gen: int) -> tuple[list[str], str]:
        """``([current key, previous key], field)`` of a 64-bit hash."""
        field = str(h & ((1 << FIELD_BITS) - 1))  # an integer string: listpack stores it as an int
        keys = [self._data(g, h >> (64 - self.bits(g))) for g in (gen, gen - 1)]
        return keys, field


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
        self._layout = _Buckets(r, name, ttl_seconds)
        self._add = r.register_script(_ADD)

    def location(self, id_: str) -> tuple[list[str], str]:
        """``(keys, field)`` of an id, for a caller's own Lua script that must check-and-set atomically with
        something else (``worker/publish.py``: the "published" memory together with XADD).

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
        at the same time, exactly one gets True."""
        gen = self._layout.generation()
        result: list[bool] = []
        for start in range(0, len(ids), _ADD_BATCH):
            index: dict[str, int] = {}
            records: list[str] = []
            for id_ in ids[start : start + _ADD_BATCH]:
                keys, field = self._layout.locate(id64(id_), gen)
                records.append(f"{index.setdefault(keys[0], len(index) + 1)} "
                               f"{index.setdefault(keys[1], len(index) + 1)} {field} ")
            args: list[Any] = [self._layout.expire, "".join(records)]
            result += [bool(x) for x in self._add(keys=list(index), args=args)]
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


# --- claims ------------------------------------------------------------------------------------------------

_CLAIM = """
for i = 2, #KEYS do
  if redis.call('HEXISTS', KEYS[i], ARGV[3]) == 1 then return 2 end
end
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _id_part(article_id: str) -> str:
    # Article ids are our own 16-hex hashes; anything else is hashed so it can never shape a key.
    return article_id if _HEX16.fullmatch(article_id) else digest(article_id)


def _claim_key(article_id: str) -> str:
    return key("claim", _id_part(article_id))


class Claim(enum.IntEnum):
    """What :func:`claim` found; false only when another task holds the article."""

    HELD = 0  # another task holds it
    TAKEN = 1  # ours now, or again (a redelivered Celery task keeps its task id and re-enters its own claim)
    PUBLISHED = 2  # already published: nothing left to do, and nothing was claimed


def claim(r: redis.Redis, article_id: str, ttl_seconds: int, owner: str, *,
          published: BucketSet | None = None) -> Claim:
    """Take the article for ``ttl_seconds`` unless another task holds it or, given the ``published`` memory,
    it has gone out already (checked in the same call: one round trip for both)."""
    keys, field = published.location(article_id) if published is not None else ([], "")
    # EVALSHA (the script is sent once per connection, not with every call)
    return Claim(r.register_script(_CLAIM)(keys=[_claim_key(article_id), *keys],
                                           args=[owner, max(1, int(ttl_seconds)), field]))


def release(r: redis.Redis, article_id: str, owner: str) -> None:
    """Give the article back, only if ``owner`` still holds it (never someone else's claim taken after ours
    expired). On a pipeline the release is queued with the pipeline's other commands."""
    r.register_script(_RELEASE)(keys=[_claim_key(article_id)], args=[owner])


# --- the same story ----------------------------------------------------------------------------------------

Reason = Literal["title", "near_text", "exact_text", "url"]


@dataclass(frozen=True)
class Duplicate:
    of: str
    reason: Reason


# One atomic step, so two workers handling copies of one story at the same time cannot both take it for
# new: check title, exact text, near text (LSH candidates verified on their stored signatures), URL - in that
# order, so a redelivery gets the same answer - and remember the article only if it is new.
# KEYS: title keys, text keys, URL keys, two band keys per band (current, previous), own signature key.
# ARGV: id, title ttl, seen ttl, threshold, signature, signature key prefix, counts (title, text, url, bands),
#       mode ("both": check, then remember if new; "check": no writes; "remember": no check), band fields.
# The candidates' signature keys are built in the script (they depend on what the bands hold); fine on a
# single Redis, which is what the workers share.
_STORY = """
local TITLE_MIN_SIMILARITY = @TITLE_MIN_SIMILARITY@
local aid = ARGV[1]
local title_ttl, seen_ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local threshold, sig, sig_prefix = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local nt, nx, nu, nb = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local ti, xi, ui, bi = 1, 1 + nt, 1 + nt + nx, 1 + nt + nx + nu
local idlen = #aid
local mode = ARGV[11]

local function holder(first, count)
  for i = first, first + count - 1 do
    local v = redis.call('GET', KEYS[i])
    if v and v ~= aid then return v end
  end
  return nil
end

local function similarity(c)
  local other = redis.call('GET', sig_prefix .. c)
  if not other or #other ~= #sig or #sig == 0 then return 0 end
  local same = 0
  for p = 1, #sig, 4 do
    if string.sub(sig, p, p + 3) == string.sub(other, p, p + 3) then same = same + 1 end
  end
  return same / (#sig / 4)
end

local of, reason = nil, nil
if mode ~= 'remember' then
  -- A shared title alone is not proof: generic titles ("Live updates", a site name as <title>) recur. The
  -- texts must overlap too (TITLE_MIN_SIMILARITY), far below the near-duplicate threshold.
  local t = holder(ti, nt)
  if t and similarity(t) >= TITLE_MIN_SIMILARITY then of = t end
  reason = 'title'
  if not of then of, reason = holder(xi, nx), 'exact_text' end
  if not of and nb > 0 then
    local best, seen = 0, {}
    local slots = #sig / 4
    for b = 0, nb - 1 do
      for g = 0, 1 do
        local v = redis.call('HGET', KEYS[bi + 2 * b + g], ARGV[12 + b])
        if v then
          for j = 1, #v, idlen do
            local c = string.sub(v, j, j + idlen - 1)
            if c ~= aid and not seen[c] then
              seen[c] = true
              local other = redis.call('GET', sig_prefix .. c)
              if other and #other == #sig then
                local same = 0
                for p = 1, #sig, 4 do
                  if string.sub(sig, p, p + 3) == string.sub(other, p, p + 3) then same = same + 1 end
                end
                local est = same / slots
                if est >= threshold and est > best then best, of = est, c end
              end
            end
          end
        end
      end
    end
    reason = 'near_text'
  end
  if not of then of, reason = holder(ui, nu), 'url' end
end

if mode == 'check' then
  if of then return {of, reason} end
  return {}
end
if of then
  -- This article's URLs now lead to the original too, so a later copy at one of them is recognised.
  for i = ui, ui + nu - 1 do redis.call('SET', KEYS[i], of, 'NX', 'EX', seen_ttl) end
  return {of, reason}
end

for i = ti, ti + nt - 1 do redis.call('SET', KEYS[i], aid, 'NX', 'EX', title_ttl) end
for i = xi, xi + nx - 1 do redis.call('SET', KEYS[i], aid, 'NX', 'EX', seen_ttl) end
for i = ui, ui + nu - 1 do redis.call('SET', KEYS[i], aid, 'NX', 'EX', seen_ttl) end
if nb > 0 then
  redis.call('SET', KEYS[#KEYS], sig, 'EX', title_ttl)
  for b = 0, nb - 1 do
    local k, f = KEYS[bi + 2 * b], ARGV[12 + b]
    local v = redis.call('HGET', k, f)
    if not v then
      redis.call('HSET', k, f, aid)
    elseif #v + idlen <= 48 then
      -- A band slot lists up to 3 ids (value stays < 64 bytes, so the hash stays a compact listpack).
      local present = false
      for j = 1, #v, idlen do if string.sub(v, j, j + idlen - 1) == aid then present = true end end
      if not present then redis.call('HSET', k, f, v .. aid) end
    end
    redis.call('EXPIRE', k, title_ttl)
  end
end
return {}
""".replace("@TITLE_MIN_SIMILARITY@", repr(TITLE_MIN_SIMILARITY))


class StoryIndex:
    """Recognises the same story arriving again under another id (see ``check_and_remember``)."""

    def __init__(self, r: redis.Redis, settings: Settings | None = None) -> None:
        self.r = r
        self.settings = settings or get_settings()
        self.title_ttl = max(1, math.ceil(self.settings.title_window_hours * 3600))
        self.seen_ttl = max(1, math.ceil(self.settings.seen_ttl_days * 86400))
        # Near-duplicate detection looks back over the title window: a story's copies arrive within hours.
        self._bands = _Buckets(r, "lsh", self.title_ttl)
        self._script = r.register_script(_STORY)

    @staticmethod
    def _url_part(url: str) -> str:
        try:
            url = canonicalize(url)
        except InvalidURL:
            url = url.strip()
        return digest(url, 32)

    def check_and_remember(self, article_id: str, title: str, text: str, canonical_url: str,
                           alt_urls: Sequence[str] = ()) -> Duplicate | None:
        """The article this one is a copy of, or None (then it is remembered as the original).

        Same story: the same normalised title within ``title_window_hours``; the same text (word sequence,
        >= 10 words); a nearly identical text (estimated Jaccard of 5-word shingles >= ``near_dup_threshold``,
        texts of >= 50 words, within the title window); or one of its URLs (canonical, final, rel=canonical,
        og:url, AMP) already belonging to another article. An article is never a duplicate of itself, so a
        redelivery gets None again (or the same answer as the first time).

        Titles match only when equal after normalisation. A headline edited by a few words is left to the
        text checks: a copy with an edited headline nearly always carries (nearly) the same text, while a
        fuzzy headline match would merge distinct stories that share a formula ("Live: ..." "... dies at 84").

        Race handling: the checks and the remembering are one Lua script, and Redis runs scripts one at a
        time, so of two workers handling copies of one story at the same moment, the first registers its
        title, text hash, bands and signature before the second looks: exactly one of them gets None.
        """
        return self._run(article_id, Fingerprint.of(title, text), [canonical_url, *alt_urls], "both")

    def find_duplicate(self, article_id: str, title: str, text: str, canonical_url: str,
                       alt_urls: Sequence[str] = ()) -> Duplicate | None:
        """The same verdict as ``check_and_remember``, without remembering anything. Racy by nature: use
        ``check_and_remember`` when the answer decides whether to publish."""
        return self._run(article_id, Fingerprint.of(title, text), [canonical_url, *alt_urls], "check")

    def remember(self, article_id: str, title: str, text: str, urls: Sequence[str]) -> None:
        """Register the article as an original without checking (never replaces an existing entry)."""
        self._run(article_id, Fingerprint.of(title, text), urls, "remember")

    def check_fingerprint(self, article_id: str, fp: Fingerprint, urls: Sequence[str]) -> Duplicate | None:
        """``check_and_remember`` on a precomputed fingerprint."""
        return self._run(article_id, fp, urls, "both")

    def _run(self, article_id: str, fp: Fingerprint, urls: Sequence[str],
             mode: Literal["both", "check", "remember"]) -> Duplicate | None:
        if not _HEX16.fullmatch(article_id):
            raise ValueError(f"article ids are 16 hex characters: {article_id[:40]!r}")
        title_keys = [key("story", "t", digest(fp.title, 32))] if fp.title else []
        text_keys = [key("story", "x", fp.exact)] if fp.exact else []
        url_keys = list(dict.fromkeys(key("story", "u", self._url_part(u)) for u in urls if u))
        band_keys: list[str] = []
        fields: list[str] = []
        sig = b""
        if fp.signature is not None:
            sig = signature_bytes(fp.signature)
            gen = self._bands.generation()
            for h in band_hashes(fp.signature):
                keys, field = self._bands.locate(h, gen)
                band_keys += keys
                fields.append(field)
        args: list[Any] = [article_id, self.title_ttl, self.seen_ttl, repr(self.settings.near_dup_threshold),
                           sig, key("story", "s", ""), len(title_keys), len(text_keys), len(url_keys),
                           len(fields), mode, *fields]
        keys = [*title_keys, *text_keys, *url_keys, *band_keys, key("story", "s", article_id)]
        result = self._script(keys=keys, args=args)
        if not result:
            return None
        of, reason = (_text(x) for x in result)
        return Duplicate(of=of, reason=reason)  # type: ignore[arg-type]  # the script returns one of the four


__all__ = [
    "BucketSet",
    "Duplicate",
    "Fingerprint",
    "StoryIndex",
    "band_hashes",
    "claim",
    "estimated_jaccard",
    "id64",
    "minhash",
    "normalize_title",
    "release",
    "words",
]
