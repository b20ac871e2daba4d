"""The bookkeeping of a one-shot run on the real Redis: a deferred feed stays outstanding, each feed's outcome
is recorded, the progress and the summary say what is left."""

from __future__ import annotations

import redis

from worker.core import runs
from worker.core.messages import FeedInfo, PageJob


def _task(feed_id: str, article_id: str, run: str) -> PageJob:
    return PageJob(article_id=article_id, url=f"http://x.example/{article_id}", canonical_url="",
                   feed=FeedInfo(id=feed_id, url="http://x.example/feed"), run=run)


def test_a_run_is_finished_only_when_every_feed_and_page_is_done(redis_client: redis.Redis) -> None:
    r = redis_client
    runs.start(r, "r1", ["fa", "fb"])
    assert runs.progress(r, "r1") == runs.Progress(feeds=2, feeds_done=0, pages=0, pending=2, published=0,
                                                   duplicates=0, dead_letters=0, deferred=0)
    # fa's host is busy: its poll is put off and sent again, the feed stays outstanding
    assert runs.deferred(r, "r1", "fa")
    runs.count(r, "polled:deferred", run_id="r1")
    runs.open_articles(r, "r1", [_task("fb", "x", "r1"), _task("fb", "y", "r1")])
    runs.count(r, "polled:new_entries", run_id="r1")
    runs.feed_done(r, "r1", "fb", "new_entries", new=2)
    now = runs.progress(r, "r1")
    assert (now.feeds_done, now.pages, now.pages_pending, now.deferred, now.finished) == (1, 2, 2, 1, False)
    runs.count(r, "published:articles", run_id="r1")
    runs.article_done(r, _task("fb", "x", "r1"))
    runs.count(r, "dead_letters:http_404", run_id="r1")
    runs.article_done(r, _task("fb", "y", "r1"))
    assert not runs.progress(r, "r1").finished  # fa is still to be polled
    runs.feed_done(r, "r1", "fa", "error", error="http_500")
    now = runs.progress(r, "r1")
    assert now.finished and (now.published, now.dead_letters, now.pages_pending) == (1, 1, 0)

    feeds = [runs.FeedRef("fa", "http://a.example/feed", "A"), runs.FeedRef("fb", "http://b.example/feed")]
    summary = runs.summary(r, "r1", feeds, 1.234)
    assert summary["finished"] and summary["pending"] == {"feeds": 0, "pages": 0}
    assert summary["feed_outcomes"] == [
        {"url": "http://a.example/feed", "name": "A", "outcome": "error", "error": "http_500", "new": 0,
         "deferred": 1},
        {"url": "http://b.example/feed", "name": None, "outcome": "new_entries", "new": 2, "deferred": 0},
    ]
    assert summary["counts"] == {"polled:deferred": 1, "polled:new_entries": 1, "published:articles": 1,
                                 "dead_letters:http_404": 1}


def test_an_unfinished_run_says_what_is_pending(redis_client: redis.Redis) -> None:
    r = redis_client
    runs.start(r, "r2", ["fa", "fb"])
    runs.open_articles(r, "r2", [_task("fb", "x", "r2")])
    runs.feed_done(r, "r2", "fb", "new_entries", new=1)
    summary = runs.summary(r, "r2", [runs.FeedRef("fa", "http://a.example/feed")], 600)
    assert not summary["finished"] and summary["pending"] == {"feeds": 1, "pages": 1}
    assert summary["feed_outcomes"][0]["outcome"] == "pending"


def test_a_closed_run_sends_no_more_polls(redis_client: redis.Redis) -> None:
    runs.start(redis_client, "r3", ["fa"])
    runs.close(redis_client, "r3")
    assert not runs.deferred(redis_client, "r3", "fa")
    assert not runs.deferred(redis_client, None, "fa")  # a poll outside any run
