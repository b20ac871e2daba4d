"""The same-story check on a Redis Cluster, where the story index is spread over every slot: each key (title,
exact text, each LSH band, each URL) lives in the slot of its own hash, so the index grows with the cluster.

No script can span those slots, so the check and the remembering are done key by key, in one order that every
worker follows (title, exact text, bands by their index, URLs sorted), each key checked and registered in one
atomic command (``SET NX GET``, or the band script), stopping at the first key that shows the same story. Two
copies of one story handled at the same moment meet on the first key both reach: the one that registers it
second finds the first there, so at most one of them is taken for new. A copy that stops early has registered
only keys before that one, which the other never reaches first, so the two cannot each find the other.
A redelivery finds its own id on the keys it registered and walks on to the same answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import redis

from worker.core.keys import key
from worker.dedup.buckets import Buckets
from worker.dedup.fingerprint import TITLE_MIN_SIMILARITY, Fingerprint, band_hashes, signature_bytes, text_of

Mode = Literal["both", "check", "remember"]
ID_LEN = 16

# KEYS: a band's bucket of the current and of the previous generation (one slot: the band hash's slot group).
# ARGV: id, field, ttl, mode. Returns the ids listed under the field in both (16 characters each, one string);
# unless mode is 'check', then lists the id under the field of the current bucket (up to 3 ids, so the value
# stays under 64 bytes and the hash a compact listpack, as in the single-slot index).
_BAND = """
local aid, f, ttl, mode = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local found = {}
for g = 1, 2 do
  local v = redis.call('HGET', KEYS[g], f)
  if v then found[#found + 1] = v end
end
if mode ~= 'check' then
  local v = redis.call('HGET', KEYS[1], f)
  if not v then
    redis.call('HSET', KEYS[1], f, aid)
  elseif #v + #aid <= 48 then
    local present = false
    for j = 1, #v, #aid do if string.sub(v, j, j + #aid - 1) == aid then present = true end end
    if not present then redis.call('HSET', KEYS[1], f, v .. aid) end
  end
  redis.call('EXPIRE', KEYS[1], ttl)
end
return table.concat(found)
"""


def similarity(a: bytes, b: bytes | None) -> float:
    """Estimated Jaccard of two stored signatures (the share of equal 32-bit minima); 0 when one is missing."""
    if not a or not b or len(a) != len(b):
        return 0.0
    return float(np.count_nonzero(np.frombuffer(a, "<u4") == np.frombuffer(b, "<u4"))) / (len(a) // 4)


class ShardedStories:
    """``StoryIndex``'s check on a cluster: the same verdicts from keys spread over the slots (module doc)."""

    def __init__(self, r: redis.Redis, bands: Buckets, *, title_ttl: int, seen_ttl: int, threshold: float) -> None:
        """``bands``: the index's LSH layout (on a cluster each band's keys are in its slot group)."""
        self.r = r
        self.title_ttl, self.seen_ttl, self.threshold = title_ttl, seen_ttl, threshold
        self._bands = bands
        self._band = r.register_script(_BAND)

    @staticmethod
    def _key(kind: str, part: str) -> str:
        return key("story", kind, part, tag=part)

    def run(self, aid: str, fp: Fingerprint, title_part: str | None, url_parts: Sequence[str],
            mode: Mode) -> tuple[str, str] | None:
        """``(original, reason)`` or None; ``mode`` as ``StoryIndex._run``."""
        writes = mode != "check"
        sig = signature_bytes(fp.signature) if fp.signature is not None else b""
        if writes and sig:
            # before any key names this article, so a copy that finds it can compare texts
            self.r.set(self._key("s", aid), sig, ex=self.title_ttl)
        urls = sorted(self._key("u", p) for p in dict.fromkeys(url_parts))
        found = self._walk(aid, fp, sig, title_part, urls, mode)
        if found is None:
            return None
        of = self._original(found[0])
        if writes:
            pipe = self.r.pipeline(transaction=False)
            # a copy that finds this one (on a key it registered before it stopped) is led to the original
            pipe.set(self._key("d", aid), of, ex=self.seen_ttl)
            # this article's URLs now lead to the original too, so a later copy at one of them is recognised
            for k in urls:
                pipe.set(k, of, nx=True, ex=self.seen_ttl)
            pipe.execute()
        return of, found[1]

    def _original(self, holder: str) -> str:
        """The article ``holder`` was found a copy of, if it was (a few hops at most: copies that met at the
        same moment); else ``holder``. A copy found before it had its answer is named as it is: still one
        article of the story, itself marked duplicate."""
        for _ in range(4):
            raw = self.r.get(self._key("d", holder))
            if raw is None:
                break
            holder = text_of(raw)
        return holder

    def _walk(self, aid: str, fp: Fingerprint, sig: bytes, title_part: str | None, urls: list[str],
              mode: Mode) -> tuple[str, str] | None:
        check = mode != "remember"
        if title_part is not None:
            holder = self._claim(self._key("t", title_part), aid, self.title_ttl, mode)
            # a shared title alone is no proof (generic titles recur): the texts must overlap too
            if check and holder and similarity(sig, self._signature(holder)) >= TITLE_MIN_SIMILARITY:
                return holder, "title"
        if fp.exact:
            holder = self._claim(self._key("x", fp.exact), aid, self.seen_ttl, mode)
            if check and holder:
                return holder, "exact_text"
        if fp.signature is not None:
            gen = self._bands.generation()
            for h in band_hashes(fp.signature):
                keys, field = self._bands.locate(h, gen)
                listed = text_of(self._band(keys=keys, args=[aid, field, self.title_ttl, mode]) or b"")
                others = [c for c in dict.fromkeys(listed[i:i + ID_LEN] for i in range(0, len(listed), ID_LEN))
                          if c != aid]
                best = self._best(sig, others) if check and others else None
                if best is not None:
                    return best, "near_text"
        for k in urls:
            holder = self._claim(k, aid, self.seen_ttl, mode)
            if check and holder:
                return holder, "url"
        return None

    def _claim(self, k: str, aid: str, ttl: int, mode: Mode) -> str | None:
        """Another article already holding ``k``, else None; unless checking only, ``k`` is ours if free."""
        raw = self.r.get(k) if mode == "check" else self.r.set(k, aid, nx=True, get=True, ex=ttl)
        holder = text_of(raw) if raw is not None else None
        return holder if holder != aid else None

    def _signature(self, aid: str) -> bytes | None:
        raw = self.r.get(self._key("s", aid))
        return bytes(raw) if raw is not None else None

    def _best(self, sig: bytes, candidates: list[str]) -> str | None:
        """The candidate with the most similar text at or above the threshold (first of equals), else None."""
        pipe = self.r.pipeline(transaction=False)
        for c in candidates:
            pipe.get(self._key("s", c))
        best, of = 0.0, None
        for c, other in zip(candidates, pipe.execute(), strict=True):
            est = similarity(sig, other)
            if est >= self.threshold and est > best:
                best, of = est, c
        return of
