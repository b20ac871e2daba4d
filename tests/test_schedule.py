"""The due/backoff schedule and the feed list, on the real Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from worker.feeds import Feed, FeedList, FeedListError, load_feeds, parse_feed_list, save_feeds
from worker.schedule import Schedule
from worker.settings import Settings


def make(r: redis.Redis, **kw: object) -> Schedule:
    return Schedule(r, Settings(backoff_base=60, backoff_max=3600, default_interval=300, **kw))  # type: ignore[arg-type]


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
    assert s.record_success(fast, etag='"a"', last_modified=None, status=200, now=0) == 60
    assert s.record_success(fast, etag='"a"', last_modified=None, status=200, ttl_seconds=1800, now=0) == 1800
    assert s.record_success(fast, etag=None, last_modified=None, status=304, retry_after=7200, now=0) == 7200
    assert s.state(fast.id).etag == '"a"'  # a 304 keeps the validators


def test_failures_back_off_exponentially_and_are_capped(redis_client: redis.Redis) -> None:
    s = make(redis_client)
    feed = Feed(url="http://example.com/bad.xml", interval=30)
    s.sync([feed], now=0)
    delays = [s.record_failure(feed, reason="http_5xx", now=0) for _ in range(10)]
    assert delays[0] == pytest.approx(60, rel=0.11)
    assert delays[3] == pytest.approx(480, rel=0.11)
    assert max(delays) <= 3600
    assert delays[-1] >= 3600 * 0.9  # capped, with jitter
    s.record_success(feed, etag=None, last_modified=None, status=200, now=0)
    assert s.state(feed.id).errors == 0


def test_removed_feeds_are_forgotten(redis_client: redis.Redis) -> None:
    s = make(redis_client)
    a, b = Feed(url="http://example.com/a.xml"), Feed(url="http://example.com/b.xml")
    s.sync([a, b], now=0)
    assert s.sync([a], now=0) == (0, 1)
    assert s.feed(b.id) is None
    s.record_success(b, etag=None, last_modified=None, status=200, now=0)
    assert s.count_due(now=10**9) == 1  # a late report for a removed feed does not bring it back


def test_feed_list_reloads_on_change(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    save_feeds(path, [Feed(url="http://example.com/a.xml", tags=("x",))])
    fl = FeedList(path)
    feeds, changed = fl.get()
    assert changed and feeds[0].tags == ("x",)
    assert fl.get()[1] is False
    save_feeds(path, [*feeds, Feed(url="http://example.com/b.xml", interval=60)])
    feeds, changed = fl.get()
    assert changed and len(feeds) == 2 and load_feeds(path) == feeds


def test_feed_list_validation() -> None:
    assert parse_feed_list({"feeds": ["http://example.com/a", {"url": "http://example.com/a"}]})[0].url
    with pytest.raises(FeedListError, match="feed #1"):
        parse_feed_list({"feeds": [{"url": "ftp://example.com/x"}]})
    with pytest.raises(FeedListError):
        parse_feed_list({"feeds": [{"url": "http://example.com/x", "bogus": 1}]})
    with pytest.raises(FeedListError):
        parse_feed_list(["not", "a", "mapping"])


def test_shipped_feed_list_is_valid() -> None:
    feeds = load_feeds(Path(__file__).resolve().parent.parent / "config" / "feeds.yaml")
    assert len(feeds) >= 12
    assert len({f.language for f in feeds}) >= 4
