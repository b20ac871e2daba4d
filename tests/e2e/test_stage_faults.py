"""kill -9 at each stage of the staged pipeline, on a private Redis with real workers of both stages: a download
worker (thread pool) and an extract worker (prefork). Whatever dies where, every article is published exactly
once, nothing is lost, and a page handed over is not downloaded again.

The crash points come from ``tests/e2e/crash_app.py`` (Celery's own task signals, loaded only by these tests):
the killed worker's unacknowledged messages come back after the visibility timeout, when a new worker starts.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.test_faults import Stack, assert_published_once, serve_site
from tests.pipeline_helpers import slow_page
from worker.core import runs
from worker.demo.server import LocalServer
from worker.feeds.feedlist import Feed
from worker.publish.deadletter import DeadLetters

pytestmark = pytest.mark.cluster  # every one of them again with the state on a Redis Cluster
VISIBILITY = 8  # seconds: the killed worker's messages come back this long after they were taken


def wait_visibility(s: Stack) -> None:
    """Until the newest unacknowledged message is older than the visibility timeout (kombu restores it then,
    when a worker starts)."""
    unacked = s.broker.zrange("unacked_index", 0, -1, withscores=True)
    assert unacked, "the kill left no unacknowledged message"
    newest = max(score for _, score in unacked)
    time.sleep(max(0.0, newest + VISIBILITY + 1 - time.time()))


def wait_crash(s: Stack, victim: subprocess.Popen[bytes], name: str) -> None:
    """Until the worker under test has killed itself at its crash point."""
    deadline = time.monotonic() + 90
    while victim.poll() is None:
        assert time.monotonic() < deadline, "the crash point was never reached: " + s.log_tail(name)
        time.sleep(0.1)


def crash_env(tmp: Path, point: str) -> dict[str, str]:
    return {"CRASH_AT": point, "CRASH_FLAG": str(tmp / "crashed"), "PYTHONPATH": str(Path(__file__).parents[2])}


def page_paths(site: object, server: LocalServer) -> list[str]:
    return [f"/articles/{a.slug}.html" for a in site.articles]  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_download_worker_killed_mid_download(tmp_path: Path, http_server: LocalServer) -> None:
    """The download worker dies while a page is on the wire: the page comes back to a new download worker and
    is published once; the extract worker never noticed."""
    s = Stack(tmp_path, env={"INGEST_VISIBILITY_TIMEOUT": str(VISIBILITY)})
    try:
        site = serve_site(http_server, n=4, seed=71)
        slow = page_paths(site, http_server)[0]
        in_fetch = slow_page(http_server, slow)
        s.start_worker("extract", stage="extract", concurrency=1)
        victim = s.start_worker("download", stage="download", concurrency=8)
        run_id = s.poll([Feed(url=http_server.url(site.feed_path), name="dl-killed")])
        assert in_fetch.wait(90), "the slow page was never fetched: " + s.log_tail("download")
        time.sleep(0.5)
        s.kill_group(victim)
        assert victim.returncode == -signal.SIGKILL
        assert runs.pending(s.r, run_id) > 0
        wait_visibility(s)
        s.start_worker("download2", stage="download", concurrency=8)
        counts = s.wait(run_id, timeout=150)
        assert_published_once(s.published(), http_server, site)
        assert counts.get("published:articles") == 4, counts
        assert http_server.hits[slow] >= 2, "the slow page was not fetched again after the kill"
        assert DeadLetters(s.r).list() == []
    finally:
        s.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_download_worker_killed_after_handing_over(tmp_path: Path, http_server: LocalServer) -> None:
    """Killed after the page was stored and the extract message sent, before the download was acknowledged
    (no extract worker runs yet): the redelivered download sends the extract message again from the stored
    page without fetching it again, and the two messages publish the article once."""
    s = Stack(tmp_path, env={"INGEST_VISIBILITY_TIMEOUT": str(VISIBILITY)})
    try:
        site = serve_site(http_server, n=3, seed=72)
        victim = s.start_worker("download", stage="download", concurrency=1, app="tests.e2e.crash_app",
                                env=crash_env(tmp_path, "postrun:worker.tasks.fetch_article"))
        run_id = s.poll([Feed(url=http_server.url(site.feed_path), name="handed-over")])
        wait_crash(s, victim, "download")
        assert (tmp_path / "crashed").exists()
        wait_visibility(s)
        s.start_worker("download2", stage="download", concurrency=4)
        s.start_worker("extract", stage="extract", concurrency=1)
        counts = s.wait(run_id, timeout=150)
        assert_published_once(s.published(), http_server, site)
        assert counts.get("published:articles") == 3, counts
        assert all(http_server.hits[p] == 1 for p in page_paths(site, http_server)), http_server.hits
        assert "page_already_downloaded" in s.log_tail("download2", 200_000)
    finally:
        s.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_extract_worker_killed_mid_extraction(tmp_path: Path, http_server: LocalServer) -> None:
    """The extract worker dies as it starts on a page that is waiting in Redis: a new extract worker takes
    the page from there (no second download) and publishes every article once. A message the dying worker had
    just popped and not yet recorded as unacknowledged (kombu's Redis transport) is lost to the broker; beat's
    sweep sends its page again (``worker.core.ledger``), here every 2 s as the test's beat."""
    s = Stack(tmp_path, env={"INGEST_VISIBILITY_TIMEOUT": str(VISIBILITY)})
    try:
        site = serve_site(http_server, n=3, seed=73)
        s.start_worker("download", stage="download", concurrency=4)
        victim = s.start_worker("extract", stage="extract", concurrency=1, app="tests.e2e.crash_app",
                                env=crash_env(tmp_path, "prerun:worker.tasks.extract_article"))
        run_id = s.poll([Feed(url=http_server.url(site.feed_path), name="extract-killed")])
        wait_crash(s, victim, "extract")
        assert not s.published()
        wait_visibility(s)
        s.start_worker("extract2", stage="extract", concurrency=1)
        deadline = time.monotonic() + 150
        while runs.pending(s.r, run_id) > 0:
            assert time.monotonic() < deadline, s.log_tail("extract2")
            s.app.send_task("worker.tasks.sweep", queue="poll")
            time.sleep(2)
        counts = runs.totals(s.r, run_id)
        assert_published_once(s.published(), http_server, site)
        assert counts.get("published:articles") == 3, counts
        assert all(http_server.hits[p] == 1 for p in page_paths(site, http_server)), http_server.hits
        assert not list(s.r.scan_iter("ingest:page:*")), "a handed-over page was left behind"
    finally:
        s.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_extract_worker_killed_after_publishing_before_the_ack(tmp_path: Path, http_server: LocalServer) -> None:
    """The article is on the stream, the task's writes are done, and the worker dies before Celery
    acknowledges the message: the redelivery finds the article published and publishes nothing twice."""
    s = Stack(tmp_path, env={"INGEST_VISIBILITY_TIMEOUT": str(VISIBILITY), "INGEST_CLEAN_HOLD_SECONDS": "0"})
    try:
        site = serve_site(http_server, n=3, seed=74)
        s.start_worker("download", stage="download", concurrency=4)
        victim = s.start_worker("extract", stage="extract", concurrency=1, app="tests.e2e.crash_app",
                                env=crash_env(tmp_path, "postrun:worker.tasks.extract_article"))
        run_id = s.poll([Feed(url=http_server.url(site.feed_path), name="published-then-killed")])
        wait_crash(s, victim, "extract")
        assert len(s.published()) == 1, "the first article should be on the stream when the worker dies"
        wait_visibility(s)
        s.start_worker("extract2", stage="extract", concurrency=1)
        counts = s.wait(run_id, timeout=150)
        assert_published_once(s.published(), http_server, site)
        assert counts.get("published:articles") == 3, counts
        assert "already_published" in s.log_tail("extract2", 200_000)
    finally:
        s.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_message_lost_by_the_broker_is_sent_again_by_the_sweep(tmp_path: Path, http_server: LocalServer) -> None:
    """A page's download message vanishes from the broker (what kombu's Redis transport does to a message a
    worker popped as it was killed): the ledger of pages in flight still has it, beat's sweep sends it again
    once it is overdue, and every article is published once."""
    s = Stack(tmp_path, env={"INGEST_VISIBILITY_TIMEOUT": str(VISIBILITY)})
    try:
        site = serve_site(http_server, n=3, seed=75)
        s.start_worker("poller", stage="download", queues="poll", concurrency=2)
        run_id = s.poll([Feed(url=http_server.url(site.feed_path), name="lost-message")])
        deadline = time.monotonic() + 60
        while s.broker.llen("fetch") < 3:
            assert time.monotonic() < deadline, s.log_tail("poller")
            time.sleep(0.1)
        assert s.broker.rpop("fetch") is not None  # the oldest message, gone
        s.start_worker("download", stage="download", concurrency=4)
        s.start_worker("extract", stage="extract", concurrency=1)
        deadline = time.monotonic() + 150
        while runs.pending(s.r, run_id) > 0:
            assert time.monotonic() < deadline, (runs.totals(s.r, run_id), s.log_tail("download"))
            s.app.send_task("worker.tasks.sweep", queue="poll")
            time.sleep(2)
        assert_published_once(s.published(), http_server, site)
        assert runs.totals(s.r, run_id).get("published:articles") == 3
        assert "pages_resent" in s.log_tail("poller", 200_000) + s.log_tail("download", 200_000)
    finally:
        s.close()
