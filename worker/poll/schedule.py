"""Per-feed polling state in Redis: when each feed is due, its validators, and its backoff.

One sorted set holds every feed's next due time, so the dispatcher's cost per tick is one range query
whatever the number of feeds (10 000 feeds need no beat entry each). A claimed feed is pushed a lease into
the future, so a lost poll task is retried after the lease rather than never.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from worker.core.keys import digest, key
from worker.core.settings import Settings, get_settings
from worker.feeds.feedlist import Feed
from worker.poll import intervals

INVALID_TAG = "feeds-invalid"  # on a cluster, the problems and their digest share a slot (one MULTI)
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


def failing_key() -> str:
    return key("feeds", "failing")


def state_key(feed_id: str) -> str:
    return key("feed", feed_id)


def invalid_key() -> str:
    """The feed list's current problems, one line each (skipped entries, or a file that cannot be read)."""
    return key("feeds", "invalid", tag=INVALID_TAG)


_STATE_FIELDS = ("etag", "last_modified", "errors", "body_hash", "last_ok", "history", "ttl", "skips")


@dataclass(frozen=True)
class FeedState:
    etag: str | None
    last_modified: str | None
    errors: int
    body_hash: str | None = None
    last_poll: float | None = None
    history: tuple[float, ...] = ()  # when the feed's recent new entries appeared (epoch seconds)
    ttl: float | None = None  # what the feed's last parsed body declared, for the 304s in between
    skip_hours: frozenset[int] = frozenset()
    skip_days: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Answer:
    """What a poll that got an answer (200 or 304) learnt: validators to keep, and the signals that decide
    when to poll next."""

    status: int
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    published: tuple[float | None, ...] = ()  # the new entries' dates (epoch), None when undated
    ttl: float | None = None
    fresh_for: float | None = None
    retry_after: float | None = None
    skip_hours: frozenset[int] = frozenset()
    skip_days: frozenset[str] = frozenset()
    parsed: bool = False  # the body was parsed: ttl and skips above are the feed's current ones


class Schedule:
    """Due times, validators, publishing history and backoff of every feed."""

    def __init__(self, r: redis.Redis, settings: Settings | None = None) -> None:
        self.r = r
        self.settings = settings or get_settings()
        self._claim = r.register_script(_CLAIM)

    def sync(self, feeds: list[Feed], now: float | None = None) -> tuple[int, int]:
        """Make Redis match the feed list: new (and re-enabled) feeds become due now, disabled ones leave the
        due set but keep their state, removed ones are forgotten. Returns (added, removed)."""
        now = time.time() if now is None else now
        wanted = {f.id: f for f in feeds}
        current = {k.decode() for k in self.r.hkeys(config_key())}
        removed = current - set(wanted)
        pipe = self.r.pipeline(transaction=False)
        for feed_id, feed in wanted.items():
            pipe.hset(config_key(), feed_id, feed.model_dump_json())
        active = [fid for fid, f in wanted.items() if f.enabled]
        disabled = [fid for fid, f in wanted.items() if not f.enabled]
        if active:  # nx: a feed already scheduled (or claimed) keeps its due time
            pipe.zadd(due_key(), {fid: now for fid in active}, nx=True)
        if disabled:
            pipe.zrem(due_key(), *disabled)
        if removed:
            pipe.hdel(config_key(), *removed)
            pipe.zrem(due_key(), *removed)
            pipe.zrem(failing_key(), *removed)
            for feed_id in removed:
                pipe.delete(state_key(feed_id))
        pipe.execute()
        return len([fid for fid in wanted if fid not in current]), len(removed)

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
        raw = self.r.hmget(state_key(feed_id), list(_STATE_FIELDS))
        etag, lastmod, errors, body_hash, last_ok, history, ttl, skips = (
            v.decode() if v is not None else None for v in raw)
        hours, days = json.loads(skips) if skips else ((), ())
        return FeedState(etag or None, lastmod or None, int(errors or 0), body_hash or None,
                         float(last_ok) if last_ok else None, tuple(json.loads(history)) if history else (),
                         float(ttl) if ttl else None, frozenset(hours), frozenset(days))

    def limits(self, feed: Feed) -> intervals.Bounds:
        s = self.settings
        return intervals.bounds(s.min_interval, s.max_interval, feed.min_interval, feed.max_interval)

    def record_success(self, feed: Feed, answer: Answer, *, push: bool = False, state: FeedState | None = None,
                       now: float | None = None) -> float:
        """A poll answered (200 or 304): reset the error count, keep the validators of a 200 verbatim (a 304
        keeps those we sent), learn from the new entries, and schedule the next poll: the feed's pinned or
        adaptive interval (its ceiling while push delivers its entries), jittered, never below the floor, then
        stretched by whatever the server asked for. ``state`` is the one the poll read, if it has it (saves a
        round trip). Returns the delay."""
        now = time.time() if now is None else now
        s = self.settings
        state = state or self.state(feed.id)
        history = state.history
        if answer.published:
            seen_at = intervals.entry_times(answer.published, last_poll=state.last_poll, now=now)
            history = tuple(intervals.remember(history, seen_at))
        limits = self.limits(feed)
        if feed.interval:
            base = min(max(feed.interval, limits.floor), limits.ceiling)
        elif push:
            base = limits.ceiling  # polling is only the safety net
        else:
            base = intervals.adaptive_interval(history, now=now, default=s.default_interval, limits=limits)
        delay = max(intervals.jittered(base, s.interval_jitter), limits.floor)
        if answer.parsed:
            ttl, skip_hours, skip_days = answer.ttl, answer.skip_hours, answer.skip_days
        else:
            ttl, skip_hours, skip_days = state.ttl, state.skip_hours, state.skip_days
        delay = max(delay, intervals.server_delay(ttl, answer.fresh_for, answer.retry_after,
                                                  cap=intervals.MAX_SERVER_DELAY))
        due = intervals.skip_allowed(now + delay, skip_hours, skip_days)
        fields: dict[str, Any] = {"last_poll": now, "last_ok": now, "last_status": answer.status, "errors": 0,
                                  "next_due": due, "interval": round(base, 1), "last_error": "",
                                  "history": json.dumps([round(t, 1) for t in history])}
        if answer.status != 304:  # only a full answer replaces the validators; stored exactly as sent
            fields |= {"etag": answer.etag or "", "last_modified": answer.last_modified or "",
                       "body_hash": answer.body_hash or ""}
        if answer.parsed:
            fields |= {"ttl": ttl or "", "skips": json.dumps([sorted(skip_hours), sorted(skip_days)])}
        self._write(feed.id, fields, due, failing=False)
        return due - now

    def record_failure(
        self, feed: Feed, *, reason: str, retry_after: float | None = None, now: float | None = None
    ) -> float:
        """A poll failed: back off exponentially (capped, with jitter so failing feeds spread out) and keep
        retrying, never sooner than the floor or the server's Retry-After. Returns the delay."""
        now = time.time() if now is None else now
        errors = int(self.r.hincrby(state_key(feed.id), "errors", 1))
        s = self.settings
        backoff = intervals.backoff(errors, base=s.backoff_base, ceiling=s.backoff_max)
        delay = max(intervals.jittered(backoff, s.interval_jitter), self.limits(feed).floor)
        delay = max(min(delay, s.backoff_max), intervals.server_delay(retry_after, cap=intervals.MAX_SERVER_DELAY))
        fields = {"last_poll": now, "last_error": reason[:200], "last_error_at": now, "next_due": now + delay}
        self._write(feed.id, fields, now + delay, failing=True, errors=errors)
        return delay

    def defer(self, feed_id: str, delay: float, now: float | None = None) -> None:
        """Push a claimed feed's next poll ``delay`` seconds out without counting an error (e.g. its host is
        at its politeness limit)."""
        now = time.time() if now is None else now
        self.r.zadd(due_key(), {feed_id: now + delay}, xx=True)

    def _write(self, feed_id: str, fields: dict[str, Any], next_due: float, *, failing: bool,
               errors: int = 0) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(state_key(feed_id), mapping=fields)
        # xx: a feed removed from the list (or disabled) while its poll ran must not come back.
        pipe.zadd(due_key(), {feed_id: next_due}, xx=True)
        if failing:  # the failing index lets `feeds list` and the metrics find them without a scan
            pipe.zadd(failing_key(), {feed_id: errors})
        else:
            pipe.zrem(failing_key(), feed_id)
        pipe.execute()

    def record_problems(self, problems: list[str]) -> bool:
        """Keep the feed list's problems for ``ingest stats`` and the ``ingest_feeds_invalid`` metric. Returns
        whether they differ from those recorded before, so that of all the workers reading the same file one
        reports them, once per edit."""
        fingerprint = digest("\n".join(problems))
        pipe = self.r.pipeline(transaction=True)
        pipe.set(key("feeds", "invalid", "digest", tag=INVALID_TAG), fingerprint, get=True)
        pipe.delete(invalid_key())
        if problems:
            pipe.rpush(invalid_key(), *problems)
        before = pipe.execute()[0]
        return (before.decode() if before else digest("")) != fingerprint

    def problems(self) -> list[str]:
        return [p.decode() for p in self.r.lrange(invalid_key(), 0, -1)]

    def failing(self, limit: int = 100) -> list[tuple[str, int]]:
        """The feeds whose last poll failed, most consecutive errors first."""
        rows = self.r.zrevrange(failing_key(), 0, limit - 1, withscores=True)
        return [(fid.decode(), int(score)) for fid, score in rows]

    def count_failing(self) -> int:
        return int(self.r.zcard(failing_key()))

    def describe(self, feed_id: str) -> dict[str, str]:
        return self.describe_many([feed_id])[feed_id]

    def describe_many(self, feed_ids: list[str]) -> dict[str, dict[str, str]]:
        """Every field of each feed's state hash (empty for a feed never polled), in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for feed_id in feed_ids:
            pipe.hgetall(state_key(feed_id))
        return {fid: {k.decode(): v.decode() for k, v in raw.items()}
                for fid, raw in zip(feed_ids, pipe.execute(), strict=True)}
