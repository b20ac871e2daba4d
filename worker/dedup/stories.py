"""``StoryIndex``: the same story under another URL: same normalised title, the same or a nearly identical text
(MinHash + LSH), or a URL that already belongs to another article. Every key is built with ``worker.core.keys.key``;
text from the outside world (titles, texts, URLs) only ever appears in a key hashed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis

from worker.core.keys import digest, key
from worker.core.settings import Settings, get_settings
from worker.core.urls import InvalidURL, canonicalize
from worker.dedup.buckets import Buckets
from worker.dedup.fingerprint import HEX16, TITLE_MIN_SIMILARITY, Fingerprint, band_hashes, signature_bytes, text_of
from worker.dedup.stories_sharded import ShardedStories

# --- the same story ----------------------------------------------------------------------------------------

Reason = Literal["title", "near_text", "exact_text", "url"]
# On one Redis the whole check is one atomic script (below); on a Redis Cluster each key of the index lives in
# its own slot and ``worker.dedup.stories_sharded`` walks them in one order instead (README, "State on Redis
# Cluster").


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
# The candidates' signature keys are built in the script (they depend on what the bands hold), which is why
# this script runs on one Redis only.
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
        self._bands = Buckets(r, "lsh", self.title_ttl)
        self._script = r.register_script(_STORY)
        self._sharded = ShardedStories(r, self._bands, title_ttl=self.title_ttl, seen_ttl=self.seen_ttl,
                                       threshold=self.settings.near_dup_threshold) \
            if self.settings.redis_cluster else None

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

        Race handling: on one Redis the checks and the remembering are one Lua script, and Redis runs scripts
        one at a time, so of two workers handling copies of one story at the same moment, the first registers
        its title, text hash, bands and signature before the second looks: exactly one of them gets None. On a
        cluster, ``ShardedStories`` gives the same guarantee key by key.
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
        if not HEX16.fullmatch(article_id):
            raise ValueError(f"article ids are 16 hex characters: {article_id[:40]!r}")
        if self._sharded is not None:
            found = self._sharded.run(article_id, fp, digest(fp.title, 32) if fp.title else None,
                                      [self._url_part(u) for u in urls if u], mode)
            return Duplicate(of=found[0], reason=found[1]) if found else None  # type: ignore[arg-type]
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
        of, reason = (text_of(x) for x in result)
        return Duplicate(of=of, reason=reason)  # type: ignore[arg-type]  # the script returns one of the four


