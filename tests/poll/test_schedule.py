"""The due/backoff schedule, on the real Redis."""

from __future__ import annotations

import pytest
import redis

from worker.core.settings import Settings
from worker.feeds.feedlist import Feed
from worker.poll.schedule import Answer, Schedule

DAY = 86400.0


def make(r: redis.Redis, **kw: object) -> Schedule:
    base: dict[str, object] = {"backoff_base": 60, "backoff_max": 3600, "default_interval": 300,
                               "min_interval": 60, "max_interval": DAY, "interval_jitter": 0.0}
    return Schedule(r, Settings(**(base | kw)))  # type: ignore[arg-type]


def test_new_feeds_are_due_at_once_and_claimed_once(redis_client: redis.Redis) -> None:
    s = make(redis_client)
    feeds = [Feed(url=f"http://example.com/{i}.xml") for i in range(5)]
    assert s.sync(feeds, now=1000) == (5, 0)
    assert s.count_due(now=1000) == 5
    first = s.claim_due(now=1000)
    assert sorted(first) == sorted(f.id for f in feeds)
    assert s.claim_due(now=1001) == []  # leased: a second dispatcher gets nothing


def test_interval_ttl_and_retry_after_decide_next_poll(redis_client: redis.Redis) -> None:
    s = make(redis_client)
    fast = Feed(url="http://example.com/fast.xml", interval=60)
    s.sync([fast], now=0)
    assert s.record_success(fast, Answer(200, etag='"a"', parsed=True), now=0) == 60
    assert s.record_success(fast, Answer(200, etag='"a"', ttl=1800, parsed=True), now=0) == 1800
    assert s.record_success(fast, Answer(304, retry_after=7200), now=0) == 7200
    assert s.record_success(fast, Answer(304), now=0) == 1800  # the ttl of the last parsed body still holds
    assert s.record_success(fast, Answer(304, fresh_for=3000), now=0) == 3000  # Cache-Control max-age
    assert s.record_success(fast, Answer(200, etag='"b"', parsed=True), now=0) == 60  # ttl gone from the feed
    assert s.record_success(fast, Answer(304, retry_after=10**9), now=0) == 7 * DAY  # a typo cannot lose it
    assert s.state(fast.id).etag == '"b"'  # a 304 keeps the validators


def test_failures_back_off_exponentially_and_are_capped(redis_client: redis.Redis) -> None:
    s = make(redis_client)
    feed = Feed(url="http://example.com/bad.xml", interval=30)
    s.sync([feed], now=0)
    delays = [s.record_failure(feed, reason="http_5xx", now=0) for _ in range(10)]
    assert delays[0] == pytest.approx(60, rel=0.11)
    assert delays[3] == pytest.approx(480, rel=0.11)
    assert max(delays) <= 3600
    assert delays[-1] >= 3600 * 0.9  # capped, with jitter
    assert s.failing() == [(feed.id, 10)]  # visible, and still retried
    assert float(s.describe(feed.id)["next_due"]) == pytest.approx(delays[-1])
    s.record_success(feed, Answer(200), now=0)
    assert s.state(feed.id).errors == 0
    assert s.failing() == [] and s.count_failing() == 0


def test_removed_feeds_are_forgotten(redis_client: redis.Redis) -> None:
    s = make(redis_client)
    a, b = Feed(url="http://example.com/a.xml"), Feed(url="http://example.com/b.xml")
    s.sync([a, b], now=0)
    assert s.sync([a], now=0) == (0, 1)
    assert s.feed(b.id) is None
    s.record_success(b, Answer(200), now=0)
    assert s.count_due(now=10**9) == 1  # a late report for a removed feed does not bring it back


def _hours(*h: float) -> tuple[float, ...]:
    return tuple(x * 3600 for x in h)


def test_interval_follows_how_often_the_feed_publishes(redis_client: redis.Redis) -> None:
    s = make(redis_client, min_interval=60, max_interval=DAY)
    busy, slow = Feed(url="http://example.com/busy.xml"), Feed(url="http://example.com/slow.xml")
    s.sync([busy, slow], now=0)
    now = 100 * 3600.0
    # First polls: the entries' own dates are the history. Busy: one entry every 10 minutes.
    busy_dates = tuple(now - i * 600 for i in range(20))
    assert s.record_success(busy, Answer(200, published=busy_dates, parsed=True), now=now) == pytest.approx(600)
    # Slow: one entry every 6 hours.
    slow_dates = tuple(now - h for h in _hours(0, 6, 12, 18, 24))
    assert s.record_success(slow, Answer(200, published=slow_dates, parsed=True), now=now) == pytest.approx(6 * 3600)
    # Busy goes quiet: the interval grows with the silence (half of it) up to the ceiling, and snaps back.
    assert s.record_success(busy, Answer(304), now=now + 4 * 3600) == pytest.approx(2 * 3600)
    assert s.record_success(busy, Answer(304), now=now + 10 * DAY) == DAY
    revived = tuple(now + 10 * DAY + i for i in range(1, 21))  # a burst: 20 entries in 20 s
    assert s.record_success(busy, Answer(200, published=revived, parsed=True), now=now + 10 * DAY + 30) == 60


def test_entry_dates_outside_the_poll_window_are_not_trusted(redis_client: redis.Redis) -> None:
    s = make(redis_client, min_interval=1, max_interval=DAY)
    feed = Feed(url="http://example.com/backdated.xml")
    s.sync([feed], now=0)
    s.record_success(feed, Answer(200, published=(0.0,), parsed=True), now=0)
    # Later entries claim dates years ago / in the future / none: they count as seen between polls.
    s.record_success(feed, Answer(200, published=(-10**9,), parsed=True), now=1000)
    s.record_success(feed, Answer(200, published=(10**12,), parsed=True), now=2000)
    s.record_success(feed, Answer(200, published=(None,), parsed=True), now=3000)
    assert s.state(feed.id).history == (0.0, 0.0, 2000.0, 3000.0)


def test_an_undated_first_poll_teaches_nothing(redis_client: redis.Redis) -> None:
    s = make(redis_client, default_interval=900)
    feed = Feed(url="http://example.com/undated.xml")
    s.sync([feed], now=0)
    assert s.record_success(feed, Answer(200, published=(None,) * 20, parsed=True), now=1000) == 900
    assert s.state(feed.id).history == ()


def test_bounds_per_feed_narrow_the_global_ones(redis_client: redis.Redis) -> None:
    s = make(redis_client, min_interval=120, max_interval=DAY)
    eager = Feed(url="http://example.com/eager.xml", min_interval=30)  # cannot go below the global floor
    capped = Feed(url="http://example.com/capped.xml", max_interval=3600)
    pinned = Feed(url="http://example.com/pinned.xml", interval=10)
    s.sync([eager, capped, pinned], now=0)
    burst = tuple(float(i) for i in range(20))
    assert s.record_success(eager, Answer(200, published=burst, parsed=True), now=20) == 120
    s.record_success(capped, Answer(200, published=(0.0,), parsed=True), now=0)
    assert s.record_success(capped, Answer(304), now=10 * DAY) == 3600  # quiet for days, but capped
    assert s.record_success(pinned, Answer(304), now=0) == 120  # nothing shortens below the floor


def test_push_stretches_polling_to_the_ceiling(redis_client: redis.Redis) -> None:
    s = make(redis_client, max_interval=6 * 3600)
    feed = Feed(url="http://example.com/pushed.xml")
    s.sync([feed], now=0)
    assert s.record_success(feed, Answer(304), push=True, now=0) == 6 * 3600


def test_jitter_spreads_feeds_but_never_below_the_floor(redis_client: redis.Redis) -> None:
    s = make(redis_client, min_interval=60, default_interval=600, interval_jitter=0.1)
    feeds = [Feed(url=f"http://example.com/j{i}.xml") for i in range(50)]
    s.sync(feeds, now=0)
    delays = [s.record_success(f, Answer(304), now=0) for f in feeds]
    assert len({round(d, 3) for d in delays}) > 40
    assert all(540 <= d <= 660 for d in delays)
    floor = [s.record_success(f, Answer(200, published=(0.0, 1.0), parsed=True), now=1) for f in feeds[:20]]
    assert all(60 <= d <= 66 for d in floor)


def test_skip_hours_and_days_move_the_next_poll(redis_client: redis.Redis) -> None:
    s = make(redis_client, default_interval=3600)
    feed = Feed(url="http://example.com/office-hours.xml")
    s.sync([feed], now=0)
    monday_2230 = 1_700_000_000 - 1_700_000_000 % (7 * DAY) + 4 * DAY + 22.5 * 3600  # epoch day 0 was a Thursday
    answer = Answer(200, parsed=True, skip_hours=frozenset({23, 0, 1, 2, 3, 4, 5}), skip_days=frozenset())
    delay = s.record_success(feed, answer, now=monday_2230)
    assert delay == pytest.approx(7.5 * 3600)  # next allowed hour: 06:00 the next day
    # A later 304 still honours the skips of the last parsed body; skipDays too.
    friday_2000 = monday_2230 + 4 * DAY - 2.5 * 3600
    weekend = Answer(200, parsed=True, skip_days=frozenset({"saturday", "sunday"}))
    assert s.record_success(feed, weekend, now=friday_2000 + 3 * 3600) == pytest.approx(49 * 3600)
    assert s.record_success(feed, Answer(304), now=friday_2000 + 3 * 3600) == pytest.approx(49 * 3600)


def test_disabled_feeds_are_not_polled_but_keep_their_state(redis_client: redis.Redis) -> None:
    s = make(redis_client)
    feed = Feed(url="http://example.com/paused.xml")
    s.sync([feed], now=0)
    s.record_success(feed, Answer(200, etag='"e"', parsed=True), now=0)
    assert s.sync([feed.model_copy(update={"enabled": False})], now=0) == (0, 0)
    assert s.claim_due(now=10**9) == []
    assert s.state(feed.id).etag == '"e"'
    s.sync([feed], now=50)
    assert s.claim_due(now=50) == [feed.id]
