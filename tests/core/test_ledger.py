"""The ledger of pages in flight, on the real Redis: written before the messages go out, struck off when a
page's work ends, and what the sweep finds (only pages past their time, each once per period, with the task id
they were sent under)."""

from __future__ import annotations

import time

import redis

from worker.core import ledger, runs
from worker.core.messages import FeedInfo, PageJob


def page(article: str, feed: str = "f1") -> PageJob:
    return PageJob(article_id=article, url=f"http://x.example/{article}", canonical_url=f"http://x.example/{article}",
                   feed=FeedInfo(id=feed, url="http://x.example/feed"), other_titles=["a", "b"])


def test_only_pages_past_their_time_come_back_each_once_per_period(redis_client: redis.Redis) -> None:
    a, b = page("a" * 16), page("b" * 16)
    ledger.open_pages(redis_client, [a, b], ["task-a", "task-b"], grace=3600)
    assert ledger.size(redis_client) == 2 and ledger.overdue(redis_client, grace=60) == []
    ledger.alive(redis_client, a, -1)  # a's time has passed (a lost message)
    (lost,) = ledger.overdue(redis_client, grace=60)
    job, task_id = lost
    assert task_id == "task-a"  # sent again under its own id: it re-enters its claim
    assert job.article_id == a.article_id and job.other_titles == []  # the copy leaves the cleaning hints out
    assert ledger.overdue(redis_client, grace=60) == []  # not again within the period


def test_a_page_whose_work_ended_is_never_sent_again(redis_client: redis.Redis) -> None:
    a = page("c" * 16)
    ledger.open_pages(redis_client, [a], ["task-c"], grace=3600)
    runs.article_done(redis_client, a)  # published, duplicate or dead-lettered: the run's bookkeeping too
    ledger.alive(redis_client, a, -1)  # XX: a page struck off is not written back
    assert ledger.size(redis_client) == 0 and ledger.overdue(redis_client, grace=60) == []


def test_the_same_article_from_two_feeds_is_two_pages(redis_client: redis.Redis) -> None:
    one, other = page("d" * 16, "f1"), page("d" * 16, "f2")
    ledger.open_pages(redis_client, [one, other], ["t1", "t2"], grace=3600)
    ledger.done(redis_client, one)
    assert ledger.size(redis_client) == 1
    ledger.alive(redis_client, other, -1)
    assert [task for _, task in ledger.overdue(redis_client, grace=60)] == ["t2"]


def test_a_page_put_off_is_not_taken_for_lost(redis_client: redis.Redis) -> None:
    a = page("e" * 16)
    ledger.open_pages(redis_client, [a], ["t"], grace=1)
    ledger.alive(redis_client, a, 3600)  # put off for its host's turn
    assert ledger.overdue(redis_client, grace=60) == []


def test_a_page_sent_at_its_hosts_turn_is_not_lost_before_it(redis_client: redis.Redis) -> None:
    now, later = page("f" * 16), page("0" * 16)
    ledger.open_pages(redis_client, [now, later], ["t1", "t2"], grace=0, delays=[0.0, 3600.0])
    time.sleep(0.01)
    assert [task for _, task in ledger.overdue(redis_client, grace=60)] == ["t1"]


def test_a_page_behind_a_backlog_is_not_taken_for_lost(redis_client: redis.Redis) -> None:
    """Past its time, but fanned out after the oldest message still waiting in the fetch queue: it may be waiting
    behind that backlog. A page fanned out before the oldest waiting message has left the queue: lost."""
    early, late = page("1" * 16), page("2" * 16)
    ledger.open_pages(redis_client, [early], ["t-early"], grace=0)
    time.sleep(0.05)
    oldest_waiting = time.time()
    time.sleep(0.05)
    ledger.open_pages(redis_client, [late], ["t-late"], grace=0)
    time.sleep(0.01)
    assert [t for _, t in ledger.overdue(redis_client, grace=0, queued_since=oldest_waiting)] == ["t-early"]
    assert "t-late" in [t for _, t in ledger.overdue(redis_client, grace=0)]  # no backlog: lost once late
