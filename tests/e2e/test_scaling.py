"""Horizontal scaling and life cycle on real processes: one beat of several, two workers sharing the dedup
state, SIGTERM finishing in-flight work. Each test runs on a private Redis so no other test's workers join in."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.e2e.test_faults import HOST, sender_app
from tests.pipeline_helpers import published, slow_page
from tests.waiting import wait_until
from worker.app import stages
from worker.core import runs
from worker.core.redisconn import RedisServer
from worker.demo.server import LocalServer
from worker.demo.site import build_site
from worker.feeds.feedlist import Feed, save_feeds

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture
def private() -> Iterator[tuple[str, redis.Redis]]:
    server = RedisServer()
    client = redis.Redis.from_url(server.url)
    try:
        yield server.url, client
    finally:
        client.close()
        server.stop()


def spawn(args: list[str], url: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker.app", *args], cwd=ROOT,
        env=os.environ | {"REDIS_URL": url, "INGEST_METRICS_PORT": "0", **env},
        stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 60) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_for(cond: Any, timeout: float, what: str) -> None:
    wait_until(cond, what, timeout=timeout, every=0.2)


def wait_ready(url: str, names: list[str], procs: list[subprocess.Popen[bytes]]) -> None:
    """Wait until every named worker on ``url`` answers a ping, so work sent next reaches all of them."""
    app = sender_app(url)
    try:
        def answered() -> bool:
            assert all(p.poll() is None for p in procs), "a worker exited"
            replies = app.control.ping(destination=[f"{n}@{HOST}" for n in names], timeout=0.5)
            return {name.split("@")[0] for reply in replies for name in reply} >= set(names)

        wait_until(answered, f"workers {names} to answer a ping", timeout=90)
    finally:
        app.close()


def send_polls(url: str, r: redis.Redis, feeds: list[Feed]) -> str:
    """Register the feeds and queue one poll each, as `ingest run --once` does, through a sender on ``url``."""
    code = (
        "import sys, json; from worker.feeds.feedlist import Feed; from worker.poll.schedule import Schedule; "
        "from worker.core.redisconn import get_redis; from worker.core import runs; "
        "from worker.tasks import poll_feed; "
        "feeds=[Feed.model_validate_json(x) for x in sys.argv[2:]]; r=get_redis(); Schedule(r).sync(feeds); "
        "runs.start(r, sys.argv[1], [f.id for f in feeds]); "
        "[poll_feed.apply_async((f.id, sys.argv[1]), queue='poll') for f in feeds]"
    )
    run_id = f"run{time.monotonic_ns()}"
    subprocess.run([sys.executable, "-c", code, run_id, *[f.model_dump_json() for f in feeds]], check=True,
                   env=os.environ | {"REDIS_URL": url, "INGEST_METRICS_PORT": "0"}, cwd=ROOT, timeout=60)
    return run_id


def test_only_one_beat_dispatches_and_another_takes_over(private: tuple[str, redis.Redis], tmp_path: Path,
                                                          http_server: LocalServer) -> None:
    url, r = private
    feeds = tmp_path / "feeds.yaml"
    save_feeds(feeds, [Feed(url=http_server.url("/none.xml"))])
    env = {"INGEST_DISPATCH_EVERY": "1", "INGEST_FEEDS": str(feeds)}
    beats = [spawn(["beat", "-l", "INFO", "-s", str(tmp_path / f"beat{i}")], url, tmp_path / f"beat{i}.log", **env)
             for i in range(2)]
    def sent(i: int) -> int:
        return (tmp_path / f"beat{i}.log").read_text().count("Sending due task")

    try:
        lock = "ingest:redbeat:lock"
        wait_for(lambda: r.exists(lock), 30, "a beat to take the lock")
        wait_for(lambda: all("beat: Starting" in (tmp_path / f"beat{i}.log").read_text() for i in range(2)), 60,
                 "both beats to start")
        # Both beats are up; let the schedule come round a few more times (a tick a second) before looking.
        before = sent(0) + sent(1)
        wait_for(lambda: sent(0) + sent(1) >= before + 3, 60, "three more dispatch ticks")
        sending = [i for i in range(2) if sent(i)]
        assert len(sending) == 1, f"beats dispatching: {sending}"
        holder, other = beats[sending[0]], beats[1 - sending[0]]
        stop(holder, signal.SIGKILL)
        other_log = tmp_path / f"beat{1 - sending[0]}.log"
        wait_for(lambda: "Sending due task" in other_log.read_text(), 60, "the second beat to take over")
        assert other.poll() is None
    finally:
        for proc in beats:
            stop(proc, signal.SIGKILL)


def test_two_workers_share_dedup_state_and_both_drain(private: tuple[str, redis.Redis], tmp_path: Path,
                                                       http_server: LocalServer) -> None:
    url, r = private
    site = build_site(http_server.url(""), n_articles=12, seed=5)
    http_server.routes.update(site.routes)
    # The same articles behind three feed URLs: whichever worker fetches one, the others must not publish it.
    for i in range(2):
        http_server.routes[f"/copy{i}.xml"] = site.routes[site.feed_path]
    feeds = [Feed(url=http_server.url(p)) for p in (site.feed_path, "/copy0.xml", "/copy1.xml")]
    workers = [spawn(["worker", "-Q", "poll,fetch,extract,publish", "-c", "1", "-n", f"w{i}@%h", "-l", "INFO",
                      "--without-gossip", "--without-mingle", "--prefetch-multiplier", "1"], url,
                     tmp_path / f"w{i}.log") for i in range(2)]
    try:
        wait_ready(url, ["w0", "w1"], workers)  # both take part from the first task on
        run_id = send_polls(url, r, feeds)
        wait_for(lambda: runs.pending(r, run_id) == 0 and r.exists(runs.run_key(run_id)), 120, "the run")
        articles = published(r)
        assert len(articles) == 12 and len({a["id"] for a in articles}) == 12
        done = [(tmp_path / f"w{i}.log").read_text().count("fetch_article[") for i in range(2)]
        assert all(n > 0 for n in done), f"fetch tasks per worker: {done}"
    finally:
        for proc in workers:
            stop(proc)


def test_sigterm_finishes_the_task_in_flight(private: tuple[str, redis.Redis], tmp_path: Path,
                                             http_server: LocalServer) -> None:
    url, r = private
    site = build_site(http_server.url(""), n_articles=1, seed=6)
    http_server.routes.update(site.routes)
    started = slow_page(http_server, f"/articles/{site.articles[0].slug}.html")
    # the download stage's worker (a thread pool), as a machine runs it
    args = stages()["download"].celery_args(node="term@%h", concurrency=4)
    worker = spawn([*args, "--without-gossip", "--without-mingle"], url, tmp_path / "term.log")
    try:
        run_id = send_polls(url, r, [Feed(url=http_server.url(site.feed_path))])
        assert started.wait(60), (tmp_path / "term.log").read_text()[-2000:]
        # What a container runtime does: SIGTERM to the main process only, while the download is in flight.
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        # Warm shutdown lets the download finish: the page is handed on to the extract stage's queue.
        assert r.llen("extract") == 1, (runs.totals(r, run_id), (tmp_path / "term.log").read_text()[-3000:])
        assert r.hlen("unacked") == 0  # and the download was acknowledged
    finally:
        stop(worker, signal.SIGKILL)


def test_ingest_worker_accepts_concurrency(private: tuple[str, redis.Redis], tmp_path: Path) -> None:
    """``ingest worker --concurrency 3 --queues fetch`` runs three pool processes consuming ``fetch`` only, as
    the running worker itself reports (Celery's remote control), not as its start-up banner announces."""
    url, _ = private
    log = tmp_path / "cli-worker.log"
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "worker", "--concurrency", "3", "--queues", "fetch"],
                            env=os.environ | {"REDIS_URL": url, "INGEST_METRICS_PORT": "0"}, cwd=ROOT,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    app = sender_app(url)
    try:
        def inspected() -> tuple[dict[str, Any], dict[str, Any]] | None:
            assert proc.poll() is None, log.read_text()[-2000:]
            inspect = app.control.inspect(timeout=1)
            stats, queues = inspect.stats() or {}, inspect.active_queues() or {}
            return (stats, queues) if stats and queues else None

        stats, queues = wait_until(inspected, "the worker to answer an inspect", timeout=90)
        [(name, pool)] = [(n, s["pool"]) for n, s in stats.items()]
        assert pool["max-concurrency"] == 3 and len(pool["processes"]) == 3, pool
        assert [q["name"] for q in queues[name]] == ["fetch"]
    finally:
        app.close()
        stop(proc)
