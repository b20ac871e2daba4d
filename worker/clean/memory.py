"""Per-site memory of lines and headlines in Redis, shared by all workers, feeding ``worker.clean.rules``.

For each site (registered domain) it counts on how many distinct pages each normalised line, its
digit-masked form and its "Label:" lead-in appeared, and remembers the headlines of the site's articles. Only
8-byte hashes are stored. Memory is bounded: counts live in time buckets (``site_memory_bucket_hours``) of
which the last ``site_memory_buckets`` are read and kept (older ones expire, so an old sidebar is forgotten),
each bucket holds at most ``site_memory_max_lines`` hashes and learns from at most ``site_memory_max_pages``
pages, and the headline set is capped and expires.

Observing is one atomic script call, idempotent per page id across all live buckets (task redelivery never
double counts); the lookup in :meth:`SiteMemory.clean` is one pipeline.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

from worker.clean import rules
from worker.clean.rules import CleanResult, CleanRules
from worker.core.keys import digest, key, site_part
from worker.core.settings import Settings, get_settings

# KEYS: page sets of the live buckets (current first), current line hash, headline zset.
# ARGV: page digest, max pages, max lines, bucket ttl, now, headline ttl, max headlines, n line fields,
#       line fields..., headline members...
# Returns 1 when the page was learnt, 0 when it was already known, 2 when the bucket is full of pages.
_OBSERVE = """
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
local n_fields = tonumber(ARGV[8])

local n_titles = #ARGV - 8 - n_fields
if n_titles > 0 then
  for i = 9 + n_fields, #ARGV do
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
    return 0
  end
end
if redis.call('SCARD', KEYS[1]) >= max_pages then
  return 2
end
redis.call('SADD', KEYS[1], page)
redis.call('EXPIRE', KEYS[1], ttl)

local size = redis.call('HLEN', lines_key)
for i = 9, 8 + n_fields do
  if size < max_lines then
    if redis.call('HINCRBY', lines_key, ARGV[i], 1) == 1 then
      size = size + 1
    end
  elseif redis.call('HEXISTS', lines_key, ARGV[i]) == 1 then
    redis.call('HINCRBY', lines_key, ARGV[i], 1)
  end
end
if n_fields > 0 then
  redis.call('EXPIRE', lines_key, ttl)
end
return 1
"""


def _page_fields(lines: Iterable[str]) -> list[bytes]:
    """Distinct exact, template and label hashes of one page: a line counts once per page."""
    fields: set[bytes] = set()
    for norm in {rules.normalise_line(line) for line in lines}:
        if not norm:
            continue
        fields.add(rules.exact_hash(norm))
        if rules.has_digits(norm):
            fields.add(rules.template_hash(norm))
        label = rules.line_label(norm)
        if label:
            fields.add(rules.label_hash(label))
    return sorted(fields)


class SiteMemory:
    """Site line memory in Redis: ``observe`` every page of a batch, then ``clean`` each."""

    def __init__(
        self,
        redis: redis.Redis,
        settings: Settings | None = None,
        *,
        clean_rules: CleanRules | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.r = redis
        self.settings = settings or get_settings()
        self.rules = clean_rules or CleanRules()
        self.clock = clock
        self._observe = self.r.register_script(_OBSERVE)

    # --- keys -------------------------------------------------------------------------------------------

    @property
    def _bucket_seconds(self) -> float:
        return max(1.0, self.settings.site_memory_bucket_hours * 3600.0)

    @property
    def _n_buckets(self) -> int:
        return max(1, self.settings.site_memory_buckets)

    def _buckets(self) -> list[int]:
        """Live bucket numbers, current first."""
        current = int(self.clock() // self._bucket_seconds)
        return [current - i for i in range(self._n_buckets)]

    def _ttl(self) -> int:
        # A bucket is read until it is n_buckets old; one more bucket of slack for clock skew between workers.
        return math.ceil(self._bucket_seconds * (self._n_buckets + 1))

    @staticmethod
    def _pages_key(site: str, bucket: int) -> str:
        return key("site", site_part(site), "pages", str(bucket))

    @staticmethod
    def _lines_key(site: str, bucket: int) -> str:
        return key("site", site_part(site), "lines", str(bucket))

    @staticmethod
    def _titles_key(site: str) -> str:
        return key("site", site_part(site), "titles")

    @staticmethod
    def _page_member(page_id: str) -> str:
        return digest(page_id)

    # --- API --------------------------------------------------------------------------------------------

    def observe(
        self,
        site: str,
        page_id: str,
        text: str,
        title: str | None,
        other_titles: Iterable[str] = (),
        *,
        pipe: redis.client.Pipeline | None = None,
    ) -> None:
        """Learn a page's lines (once per page id) and the site's headlines (its own, the feed's others).
        With ``pipe`` the call is queued there, to go with the caller's other commands."""
        buckets = self._buckets()
        fields = _page_fields(rules.page_lines(text))
        titles: set[bytes] = set()
        for headline in (title or "", *other_titles):
            if headline:
                titles.update(rules.title_hash(v) for v in rules.title_variants(headline))
        keys = [self._pages_key(site, b) for b in buckets]
        keys += [self._lines_key(site, buckets[0]), self._titles_key(site)]
        args: list[Any] = [
            self._page_member(page_id),
            self.settings.site_memory_max_pages,
            self.settings.site_memory_max_lines,
            self._ttl(),
            self.clock(),
            self.settings.site_titles_ttl_hours * 3600.0,
            self.settings.site_titles_max,
            len(fields),
            *fields,
            *sorted(titles),
        ]
        self._observe(keys=keys, args=args, client=pipe or self.r)

    def pages_seen(self, site: str) -> int:
        """Pages the site memory currently learns from (the live buckets)."""
        pipe = self.r.pipeline(transaction=False)
        for b in self._buckets():
            pipe.scard(self._pages_key(site, b))
        return sum(int(n) for n in pipe.execute())

    def needs_hold(self, site: str) -> bool:
        """Too little evidence yet about this site: its pages should wait for the rest of their batch."""
        return self.pages_seen(site) < self.settings.clean_min_pages

    def clean(self, site: str, page_id: str, text: str, title: str | None) -> CleanResult:
        """Remove the site's boilerplate lines from ``text`` using what the memory knows (one pipeline)."""
        lines = rules.page_lines(text)
        if not lines:
            return CleanResult(text="")
        norms = [rules.normalise_line(line) for line in lines]
        exact = {rules.exact_hash(n) for n in norms}
        template = {rules.template_hash(n) for n in norms if rules.has_digits(n)}
        labels = {rules.label_hash(lb) for lb in (rules.line_label(n) for n in norms) if lb}
        fields = sorted(exact | template | labels)
        candidates = sorted({rules.title_hash(n) for n in rules.headline_lines(lines, title)})

        buckets = self._buckets()
        member = self._page_member(page_id)
        pipe = self.r.pipeline(transaction=False)
        for b in buckets:
            pipe.hmget(self._lines_key(site, b), fields)
        for b in buckets:
            pipe.sismember(self._pages_key(site, b), member)
        if candidates:
            pipe.zmscore(self._titles_key(site), candidates)  # type: ignore[arg-type]  # bytes members
        replies = pipe.execute()

        counts: dict[bytes, int] = dict.fromkeys(fields, 0)
        for values in replies[: len(buckets)]:
            for f, v in zip(fields, values, strict=True):
                if v is not None:
                    counts[f] += int(v)
        self_observed = any(bool(x) for x in replies[len(buckets) : 2 * len(buckets)])
        headlines: set[bytes] = set()
        if candidates:
            oldest = self.clock() - self.settings.site_titles_ttl_hours * 3600.0
            scores = replies[2 * len(buckets)]
            headlines = {
                h for h, s in zip(candidates, scores, strict=True) if s is not None and float(s) >= oldest
            }

        stats = rules.lookup_stats(
            lines,
            title,
            exact_counts={h: counts[h] for h in exact},
            template_counts={h: counts[h] for h in template},  # absent hashes read as 0
            headlines=headlines,
            self_observed=self_observed,
            label_counts={h: counts[h] for h in labels},
        )
        return rules.clean_lines(lines, stats, self.rules)
