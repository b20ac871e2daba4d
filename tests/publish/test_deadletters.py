"""Dead letters: a failing page is recorded with its reason, listed by the CLI, and replayed once fixed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import redis

from tests.pipeline_helpers import poll_and_wait, published
from worker.demo.server import LocalServer, Response
from worker.demo.site import build_site
from worker.feeds.feedlist import Feed
from worker.publish.deadletter import DeadLetters

pytestmark = pytest.mark.usefixtures("celery_worker")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ))


def test_failed_page_is_dead_lettered_listed_and_replayed(redis_client: redis.Redis,
                                                          http_server: LocalServer) -> None:
    site = build_site(http_server.url(""), n_articles=3, seed=8)
    http_server.routes.update(site.routes)
    broken = f"/articles/{site.articles[0].slug}.html"
    good = http_server.routes[broken]
    http_server.routes[broken] = Response(b"gone", "text/plain", 404)
    counts = poll_and_wait(redis_client, [Feed(url=http_server.url(site.feed_path))])
    assert counts.get("published:articles") == 2 and counts.get("dead_letters:http_4xx") == 1, counts

    listed = [json.loads(line) for line in cli("dead-letters", "list", "--json").stdout.splitlines()]
    assert [(d["stage"], d["reason"], d["url"]) for d in listed] == [("fetch", "http_4xx", http_server.url(broken))]

    http_server.routes[broken] = good
    out = cli("dead-letters", "replay")
    assert out.returncode == 0 and "replayed 1" in out.stdout, out.stderr[-2000:]
    deadline = time.monotonic() + 60
    while len(published(redis_client)) < 3:
        assert time.monotonic() < deadline, "replayed article never published"
        time.sleep(0.2)
    assert DeadLetters(redis_client).list() == []
    assert len({a["id"] for a in published(redis_client)}) == 3


def test_a_poll_letter_of_a_feed_no_longer_scheduled_is_kept(redis_client: redis.Redis) -> None:
    """Replaying the dead letter of a feed since removed from the list must neither schedule it behind the
    list's back nor drop the letter as if it had been replayed."""
    letters = DeadLetters(redis_client)
    entry = letters.record(stage="poll", reason="http_5xx", url="http://gone.example/feed.xml", error="503",
                           payload={"feed_id": "0123456789abcdef"})
    out = cli("dead-letters", "replay")
    assert out.returncode == 0 and "replayed 0" in out.stdout, out.stderr[-2000:]
    assert (f"not replayable (its feed is no longer scheduled: removed from the feed list or disabled), kept: {entry}"
            in out.stderr)
    assert [d.entry_id for d in letters.list()] == [entry]
    assert redis_client.zscore("ingest:feeds:due", "0123456789abcdef") is None


def test_a_task_delivered_twice_leaves_one_letter(redis_client: redis.Redis) -> None:
    """A task killed after recording its letter but before its ack is delivered again, and the sweep may send a
    slow page's task a second time: either way the same task id, and one letter (counted once in the run)."""
    from worker.app import _current_task
    from worker.context import Context
    from worker.core import runs
    from worker.publish.deadletter import CURRENT_TASK

    ctx = Context(redis_client)

    def fail(task_id: str | None) -> None:
        _current_task(task_id=task_id)  # what Celery's task_prerun does at each delivery
        ctx.dead_letter(stage="fetch", reason="http_4xx", url="http://gone.example/a", error="HTTP 404",
                        payload={}, run_id="run-1")

    try:
        fail("task-1")
        fail("task-1")
        assert len(DeadLetters(redis_client).list()) == 1
        assert runs.totals(redis_client, "run-1").get("dead_letters:http_4xx") == 1
        fail("task-2")  # another task for the same page (a replay) is another letter
        fail(None)  # outside a task (the CLI): nothing to tell deliveries apart, every call is a letter
        fail(None)
        assert len(DeadLetters(redis_client).list()) == 4
    finally:
        CURRENT_TASK.set(None)
