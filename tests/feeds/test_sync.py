"""The dispatcher's view of the feed list file on the real Redis: a bad edit while workers run keeps the valid
feeds scheduled, every problem is recorded (``ingest stats``, ``ingest_feeds_invalid``) and logged once for the
whole fleet, however many processes read the file."""

from __future__ import annotations

from pathlib import Path

import redis
from structlog.testing import capture_logs

from worker.feeds.feedlist import Feed, FeedList, save_feeds
from worker.feeds.sync import refresh
from worker.poll.schedule import Schedule, config_key

A, B = Feed(url="http://example.com/a.xml"), Feed(url="http://example.com/b.xml")


def scheduled(r: redis.Redis) -> set[str]:
    return {k.decode() for k in r.hkeys(config_key())}


def test_a_bad_edit_keeps_the_valid_feeds_polling(redis_client: redis.Redis, tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    save_feeds(path, [A, B])
    schedule = Schedule(redis_client)
    fleet = [FeedList(path), FeedList(path)]  # two worker processes reading the same file
    refresh(schedule, fleet[0])
    assert scheduled(redis_client) == {A.id, B.id} and schedule.problems() == []

    path.write_text(f"feeds:\n  - url: {A.url}\n  - url: 'not a url'\n  - url: {B.url}\n")
    with capture_logs() as logs:
        for feed_list in fleet:
            refresh(schedule, feed_list)
            refresh(schedule, feed_list)  # the next tick: nothing new
    assert scheduled(redis_client) == {A.id, B.id}
    assert schedule.problems() == [f"{path}:3: feed #2: url: not an http(s) URL: 'not a url'"]
    reported = [e for e in logs if e["event"] == "feed_entry_invalid"]
    assert len(reported) == 1 and reported[0]["entry"] == 2 and reported[0]["line"] == 3, logs

    path.write_text("feeds: [\n")  # a file that does not parse at all: the feeds already known stay
    with capture_logs() as logs:
        for feed_list in fleet:
            refresh(schedule, feed_list)
    assert scheduled(redis_client) == {A.id, B.id}
    assert len(schedule.problems()) == 1 and "not valid YAML" in schedule.problems()[0]
    assert [e["event"] for e in logs] == ["feeds_file_invalid"]

    save_feeds(path, [A])  # fixed (and B removed on purpose)
    refresh(schedule, fleet[0])
    assert scheduled(redis_client) == {A.id} and schedule.problems() == []


def test_a_missing_file_at_start_schedules_nothing_and_removes_nothing(redis_client: redis.Redis,
                                                                     tmp_path: Path) -> None:
    schedule = Schedule(redis_client)
    schedule.sync([A])
    with capture_logs() as logs:
        refresh(schedule, FeedList(tmp_path / "missing.yaml"))
    assert scheduled(redis_client) == {A.id}
    assert logs[0]["event"] == "feeds_file_invalid" and "does not exist" in logs[0]["error"]
