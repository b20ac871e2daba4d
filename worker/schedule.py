"""Per-feed polling state in Redis: when each feed is due, its validators, and its backoff.

One sorted set holds every feed's next due time, so the dispatcher's cost per tick is one range query
whatever the number of feeds (10 000 feeds need no beat entry each). A claimed feed is pushed a lease into
the future, so a lost poll task is retried after the lease rather than never.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import redis

from worker.feeds import Feed
from worker.keys import key
from worker.settings import Settings, get_settings

POLL_LEASE = 300.0  # seconds a claimed feed stays claimed if its poll never reports back

# Claim up to ARGV[3] feeds due at ARGV[1], pushing each to ARGV[2] (the lease) in the same atomic step,
# so two dispatchers running at once never enqueue the same feed twice.
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return due
"""


def due_key() -> str:
    return key("feeds", "due")


def config_key() -> str:
    return key("feeds", "config")


def state_key(feed_id: str) -> str:
    return key("feed", feed_id)


@dataclass(frozen=True)
class FeedState:
    etag: str | None
    last_modified: str | None
    errors: int


class Schedule:
    """Due times, validators and backoff of every feed."""

    def __init__(self, r: redis.Redis, settings: Settings | None = None) -> None:
        self.r = r
        self.settings = settings or get_settings()
        self._claim = r.register_script(_CLAIM)

    def sync(self, feeds: list[Feed], now: float | None = None) -> tuple[int, int]:
        """Make Redis match the feed list: new feeds become due now, removed ones are forgotten.
        Returns (added, removed)."""
        now = time.time() if now is None else now
        wanted = {f.id: f for f in feeds}
        current = {k.decode() for k in self.r.hkeys(config_key())}
        removed = current - set(wanted)
        pipe = self.r.pipeline(transaction=False)
        for feed_id, feed in wanted.items():
            pipe.hset(config_key(), feed_id, feed.model_dump_json())
        added = 0
        new_ids = [fid for fid in wanted if fid not in current]
        if new_ids:
            pipe.zadd(due_key(), {fid: now for fid in new_ids}, nx=True)
            added = len(new_ids)
        if removed:
            pipe.hdel(config_key(), *removed)
            pipe.zrem(due_key(), *removed)
            for feed_id in removed:
                pipe.delete(state_key(feed_id))
        pipe.execute()
        return added, len(removed)

    def feed(self, feed_id: str) -> Feed | None:
        raw = self.r.hget(config_key(), feed_id)
        return Feed.model_validate_json(raw) if raw else None

    def claim_due(self, now: float | None = None, limit: int | None = None) -> list[str]:
        now = time.time() if now is None else now
        limit = limit or self.settings.dispatch_batch
        ids = self._claim(keys=[due_key()], args=[now, now + POLL_LEASE, limit])
        return [i.decode() for i in ids]

    def count_due(self, now: float | None = None) -> int:
        return int(self.r.zcount(due_key(), "-inf", time.time() if now is None else now))

    def state(self, feed_id: str) -> FeedState:
        raw = self.r.hmget(state_key(feed_id), ["etag", "last_modified", "errors"])
        etag, lastmod, errors = (v.decode() if v is not None else None for v in raw)
        return FeedState(etag or None, lastmod or None, int(errors or 0))

    def interval(self, feed: Feed) -> float:
        return feed.interval or self.settings.default_interval

    def record_success(
        self,
        feed: Feed,
        *,
        etag: str | None,
        last_modified: str | None,
        status: int,
        ttl_seconds: float | None = None,
        retry_after: float | None = None,
        now: float | None = None,
    ) -> float:
        """A poll answered (200 or 304): reset the error count, keep the validators, and schedule the next poll
        no sooner than the feed's interval, its declared <ttl> or its Retry-After. Returns the delay."""
        now = time.time() if now is None else now
        delay = max(self.interval(feed), ttl_seconds or 0.0, retry_after or 0.0)
        fields: dict[str, Any] = {"last_poll": now, "last_status": status, "errors": 0, "next_due": now + delay,
                                  "last_error": ""}
        if status != 304:  # a 304 keeps the validators we sent
            fields["etag"] = etag or ""
            fields["last_modified"] = last_modified or ""
        self._write(feed.id, fields, now + delay)
        return delay

    def record_failure(
        self, feed: Feed, *, reason: str, retry_after: float | None = None, now: float | None = None
    ) -> float:
        """A poll failed: back off exponentially (capped, with jitter so failing feeds spread out), and never
        sooner than the server's Retry-After. Returns the delay."""
        now = time.time() if now is None else now
        errors = int(self.r.hincrby(state_key(feed.id), "errors", 1))
        s = self.settings
        backoff = min(s.backoff_max, s.backoff_base * 2.0 ** (errors - 1))
        delay = max(backoff * random.uniform(0.9, 1.1), self.interval(feed), retry_after or 0.0)
        delay = min(delay, max(s.backoff_max, retry_after or 0.0))
        self._write(feed.id, {"last_poll": now, "last_error": reason[:200], "next_due": now + delay}, now + delay)
        return delay

    def defer(self, feed_id: str, delay: float, now: float | None = None) -> None:
        """Push a claimed feed's next poll ``delay`` seconds out without counting an error (e.g. its host is
        at its politeness limit)."""
        now = time.time() if now is None else now
        self.r.zadd(due_key(), {feed_id: now + delay}, xx=True)

    def _write(self, feed_id: str, fields: dict[str, Any], next_due: float) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(state_key(feed_id), mapping=fields)
        # xx: a feed removed from the list while its poll ran must not come back.
        pipe.zadd(due_key(), {feed_id: next_due}, xx=True)
        pipe.execute()

    def describe(self, feed_id: str) -> dict[str, str]:
        raw = self.r.hgetall(state_key(feed_id))
        return {k.decode(): v.decode() for k, v in raw.items()}


def feed_summary(feed: Feed) -> dict[str, Any]:
    """What a fanned-out article task carries about its feed (small and JSON-safe)."""
    summary: dict[str, Any] = feed.model_dump(mode="json", include={"url", "name", "tags", "route", "language", "robots", "retry_after_scope"})
    return summary | {"id": feed.id}
