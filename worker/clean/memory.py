"""Per-site memory of lines and headlines in Redis, shared by all workers, feeding ``worker.clean.rules``.

For each site (registered domain) it counts on how many distinct pages each normalised line, its
digit-masked form, its "Label:" lead-in and its slot (the element path of its block, ``worker.extract.slots``)
appeared, and on how many a slot held prose, and remembers the headlines of the site's articles. Only 6-byte
fingerprints are stored. Lines that become boilerplate on the site are shared with the fleet-wide prior
(``worker.clean.fleet``), which :meth:`SiteMemory.clean` reads too.

Memory is bounded: counts live in time buckets (``site_memory_bucket_hours``) of which the last
``site_memory_buckets`` are read and kept (older ones expire when they stop being read, so an old sidebar is
forgotten), each bucket holds at most ``site_memory_max_lines`` fingerprints and learns from at most
``site_memory_max_pages`` pages; headlines are fingerprints of the same buckets.

Each bucket is two compact counting tables, one Redis string each (pages, and lines with their slots and
headlines): an 8-byte header (the slots in use) and 8-byte slots of a 6-byte fingerprint and a 2-byte count,
open addressing within a window of slots (``lua/observe.lua``). A table starts at 32 slots and doubles as it
fills, so a small site takes a few hundred bytes; ~11 bytes a line where a Redis hash took ~70. At its largest
a full line table gives the slot of a line seen on one page only to the next new line: the long tail of article
lines that never repeat is what fills it, and boilerplate repeats within hours.

Observing is one atomic script call (``lua/observe.lua``), idempotent per page id across all live buckets (task
redelivery never double counts); the lookup in :meth:`SiteMemory.clean` is one script call (``lua/lookup.lua``)
in a pipeline with the fleet prior's reads.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis

from worker.clean import rules
from worker.clean.fleet import SHARE_AT, FleetPrior
from worker.clean.rules import CleanResult, CleanRules
from worker.core.keys import key, site_part, tagged
from worker.core.redisconn import lua, one_trip
from worker.core.settings import Settings, get_settings

MIN_SLOTS = 32  # a new table's slots (lua/observe.lua)
SLOT_BYTES = 8
HEADER_BYTES = 8
FINGERPRINT_BYTES = rules.HASH_BYTES


def table_slots(limit: int) -> int:
    """Slots of a table at its largest: the power of two from ``limit`` up (at least MIN_SLOTS). A table
    doubles at three quarters in use; at its largest it fills until a fingerprint's window has no room."""
    slots = MIN_SLOTS
    while slots < limit:
        slots *= 2
    return slots


def decode_table(data: bytes | None) -> dict[bytes, int]:
    """Fingerprint -> count of one table as stored (for tests and benchmarks)."""
    out: dict[bytes, int] = {}
    if not data:
        return out
    for at in range(HEADER_BYTES, len(data), SLOT_BYTES):
        fp = data[at : at + FINGERPRINT_BYTES]
        if fp.strip(b"\0"):
            out[fp] = int.from_bytes(data[at + FINGERPRINT_BYTES : at + SLOT_BYTES], "big")
    return out


def _aligned(slots: Sequence[str], lines: Sequence[str]) -> Sequence[str]:
    """The slots if there is one per line, else none (a message from before slots, or a different text)."""
    return slots if len(slots) == len(lines) else ()


def _page_fields(lines: Sequence[str], slots: Sequence[str], short_words: int) -> tuple[list[bytes], list[bytes]]:
    """Distinct hashes of one page (a line counts once per page): the exact and template hashes of its short
    lines, which the site shares with the fleet once they repeat, and the rest (long lines, labels, slots)."""
    shareable: set[bytes] = set()
    other: set[bytes] = set()
    prose_slots: set[str] = set()
    for line, slot in itertools.zip_longest(lines, slots, fillvalue=""):
        norm = rules.normalise_line(line)
        if not norm:
            continue
        words = rules.word_count(norm)
        if slot and words > short_words:
            prose_slots.add(slot)
        target = shareable if 0 < words <= short_words else other
        target.add(rules.exact_hash(norm))
        if rules.has_digits(norm):
            target.add(rules.template_hash(norm))
        label = rules.line_label(norm)
        if label:
            other.add(rules.label_hash(label))
    other.update(rules.slot_hash(s) for s in slots if s)
    other.update(rules.slot_prose_hash(s) for s in prose_slots)
    return sorted(shareable), sorted(other - shareable)


class SiteMemory:
    """Site line memory in Redis: ``observe`` every page of a batch, then ``clean`` each."""

    def __init__(
        self,
        redis: redis.Redis,
        settings: Settings | None = None,
        *,
        clean_rules: CleanRules | None = None,
        clock: Callable[[], float] = time.time,
        fleet: FleetPrior | None = None,
    ) -> None:
        self.r = redis
        self.settings = settings or get_settings()
        self.rules = clean_rules or CleanRules()
        self.clock = clock
        self.fleet = fleet or FleetPrior(redis, self.settings, clock=clock)
        self._observe = self.r.register_script(lua("worker.clean", "observe"))
        self._lookup = self.r.register_script(lua("worker.clean", "lookup"))

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

    def _ttl(self, bucket: int) -> int:
        """Seconds until the bucket's keys are no longer read (it is n_buckets old), plus a few minutes for
        clock skew between workers: each key is dropped as soon as no worker reads it."""
        end = (bucket + self._n_buckets) * self._bucket_seconds
        return max(1, math.ceil(end - self.clock() + min(300.0, self._bucket_seconds / 10)))

    def _title_buckets(self) -> int:
        """Live buckets in which a headline counts: those within ``site_titles_ttl_hours``."""
        hours = max(self.settings.site_memory_bucket_hours, 1 / 3600)
        return max(1, min(self._n_buckets, math.ceil(self.settings.site_titles_ttl_hours / hours - 1e-9)))

    # Named apart from the earlier layout's "pages" set and "lines" hash: during a rolling upgrade the old
    # workers keep theirs (which expire with their bucket) instead of meeting a table where they expect a set.
    @staticmethod
    def _pages_key(site: str, bucket: int) -> str:
        return key("site", tagged(site_part(site)), "page-table", str(bucket))

    @staticmethod
    def _lines_key(site: str, bucket: int) -> str:
        return key("site", tagged(site_part(site)), "line-table", str(bucket))

    @staticmethod
    def _page_member(page_id: str) -> bytes:
        return hashlib.blake2b(page_id.encode("utf-8", "surrogatepass"), digest_size=FINGERPRINT_BYTES,
                               person=b"page").digest()

    # --- API --------------------------------------------------------------------------------------------

    def observe(
        self,
        site: str,
        page_id: str,
        text: str,
        title: str | None,
        other_titles: Iterable[str] = (),
        *,
        slots: Sequence[str] = (),
        pipe: redis.client.Pipeline | None = None,
    ) -> list[bytes] | None:
        """Learn a page's lines and their slots (once per page id) and the site's headlines (its own, the
        feed's others). ``slots`` is ``Extracted.slots``, aligned with the text's lines (may be empty).

        Without ``pipe``: runs at once, shares with the fleet-wide prior the lines that have just become
        boilerplate on this site (a second round trip, only then) and returns them. With ``pipe`` the call is
        queued there, to go with the caller's other commands, and returns None: pass its reply from the
        pipeline's results to :meth:`share`."""
        buckets = self._buckets()
        lines = rules.page_lines(text)
        shareable, other = _page_fields(lines, _aligned(slots, lines), self.rules.short_words)
        titles: set[bytes] = set()
        for headline in (title or "", *other_titles):
            if headline:
                titles.update(rules.title_hash(v) for v in rules.title_variants(headline))
        keys = [self._pages_key(site, b) for b in buckets]
        keys += [self._lines_key(site, buckets[0])]
        args: list[Any] = [
            self._page_member(page_id),
            self.settings.site_memory_max_pages,
            table_slots(self.settings.site_memory_max_pages),
            table_slots(self.settings.site_memory_max_lines),
            self._ttl(buckets[0]),
            SHARE_AT,
            len(shareable) + len(other),
            len(shareable),
            *shareable,
            *other,
            *sorted(titles),
        ]
        if pipe is not None:
            self._observe(keys=keys, args=args, client=pipe)
            return None
        return self.share(self._observe(keys=keys, args=args, client=self.r))

    def share(self, reply: Any, *, pipe: redis.client.Pipeline | None = None) -> list[bytes]:
        """Give the fleet-wide prior what an observe reply names (lines that have just become boilerplate on
        the site): one script call, none when the reply names nothing (most pages). Returns those hashes."""
        crossed = [bytes(h) for h in (reply or [])[1:]] if isinstance(reply, list) else []
        if crossed:
            self.fleet.share(crossed, pipe=pipe)
        return crossed

    def pages_seen(self, site: str) -> int:
        """Pages the site memory currently learns from (the live buckets)."""
        pipe = self.r.pipeline(transaction=False)
        for b in self._buckets():
            pipe.getrange(self._pages_key(site, b), 0, 3)  # the page table's header: its slots in use
        return sum(int.from_bytes(n, "big") for n in pipe.execute())

    def needs_hold(self, site: str) -> bool:
        """Too little evidence yet about this site: its pages should wait for the rest of their batch."""
        return self.pages_seen(site) < self.settings.clean_min_pages

    def clean(self, site: str, page_id: str, text: str, title: str | None, *,
              slots: Sequence[str] = ()) -> CleanResult:
        """Remove the site's boilerplate lines from ``text`` using what the site memory and the fleet-wide
        prior know (one pipeline). ``slots``: as for :meth:`observe`."""
        lines = rules.page_lines(text)
        if not lines:
            return CleanResult(text="")
        slots = _aligned(slots, lines)
        norms = [rules.normalise_line(line) for line in lines]
        exact = {rules.exact_hash(n) for n in norms}
        template = {rules.template_hash(n) for n in norms if rules.has_digits(n)}
        labels = {rules.label_hash(lb) for lb in (rules.line_label(n) for n in norms) if lb}
        slot_fields = {rules.slot_hash(s) for s in slots if s} | {rules.slot_prose_hash(s) for s in slots if s}
        fields = sorted(exact | template | labels | slot_fields)
        short = [n for n in norms if 0 < rules.word_count(n) <= self.rules.short_words]
        fleet_fields = sorted({rules.exact_hash(n) for n in short}
                              | {rules.template_hash(n) for n in short if rules.has_digits(n)})
        candidates = sorted({rules.title_hash(n) for n in rules.headline_lines(lines, title)})

        buckets = self._buckets()
        asked = sorted(set(fields) | set(candidates))
        pipe = one_trip(self.r)
        self._lookup(keys=[self._pages_key(site, b) for b in buckets] + [self._lines_key(site, b) for b in buckets],
                     args=[self._page_member(page_id), *asked], client=pipe)
        n_fleet = self.fleet.queue_lookup(pipe, fleet_fields)
        replies = pipe.execute()

        found = replies[0]
        self_observed = bool(found[0])
        per_bucket = [dict(zip(asked, found[1 + i * len(asked) : 1 + (i + 1) * len(asked)], strict=True))
                      for i in range(len(buckets))]
        counts = {f: sum(int(b[f]) for b in per_bucket) for f in fields}
        headlines = {h for h in candidates if any(b[h] for b in per_bucket[: self._title_buckets()])}
        fleet_counts = self.fleet.counts(fleet_fields, replies[1 : 1 + n_fleet])

        stats = rules.lookup_stats(
            lines,
            title,
            exact_counts={h: counts[h] for h in exact},
            template_counts={h: counts[h] for h in template},  # absent hashes read as 0
            headlines=headlines,
            self_observed=self_observed,
            label_counts={h: counts[h] for h in labels},
            slots=slots,
            slot_counts={h: counts[h] for h in slot_fields},
            fleet_counts=fleet_counts,
            rules=self.rules,
        )
        return rules.clean_lines(lines, stats, self.rules)
