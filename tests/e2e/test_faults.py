"""Reliability under faults (issue 5), on real parts only: real redis-server processes, real Celery worker
processes killed with SIGKILL, a real Redis restart, a real downstream consumer process that dies mid-batch,
and a real HTTP server that misbehaves.

Every test that kills or restarts something runs on its own throwaway Redis (``Stack``), never on the shared
test Redis: the session's ``celery_worker`` would otherwise race the workers under test for the same queues.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from kombu import Queue

from tests.conftest import ON_CLUSTER, clean_db, state_client
from tests.pipeline_helpers import slow_page
from tests.waiting import wait_until
from worker.app import QUEUES
from worker.core import runs
from worker.core.redisconn import RedisServer, free_port
from worker.demo.server import LocalServer, Response, quietly
from worker.demo.site import build_site
from worker.feeds.feedlist import Feed
from worker.poll.schedule import Schedule, due_key
from worker.publish.consume import Consumer
from worker.publish.deadletter import DeadLetters

ROOT = Path(__file__).resolve().parents[2]
HOST = os.uname().nodename


# --- a private stack: throwaway Redis, a sender app bound to it, worker processes ---------------------------


def sender_app(url: str) -> Celery:
    """A Celery app that only sends, bound to ``url`` (the imported ``worker.app`` is bound to the shared
    test Redis). Same queues as ``worker.app``, so messages route identically."""
    app = Celery(f"sender-{uuid.uuid4().hex[:6]}", broker=url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"], task_queues=[Queue(q) for q in QUEUES],
                    task_default_queue="fetch", broker_connection_retry_on_startup=True)
    return app


class Stack:
    """A throwaway redis-server, a sender bound to it, and Celery worker processes on it. On the cluster
    (``TEST_REDIS_CLUSTER``) the throwaway server is the broker and the state goes to the suite's cluster."""

    def __init__(self, tmp: Path, port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.server = RedisServer(port)
        self.url = self.server.url
        self.broker = redis.Redis.from_url(self.url)  # queues, kombu's unacknowledged messages
        self.r = state_client() if ON_CLUSTER else self.broker  # state and streams
        if ON_CLUSTER:
            clean_db(self.r)
        self.app = sender_app(self.url)
        self.env = {
            "REDIS_URL": os.environ["REDIS_URL"] if ON_CLUSTER else self.url,
            "INGEST_BROKER_URL": self.url,
            "INGEST_METRICS_PORT": "0",
            "INGEST_CLEAN_HOLD_SECONDS": "3",
            "INGEST_ALLOW_PRIVATE_NETWORKS": "true",
            "INGEST_LOG_FORMAT": "json",
        } | (env or {})
        self.workers: list[subprocess.Popen[bytes]] = []
        self.names: list[str] = []

    def start_worker(self, name: str, *, concurrency: int = 1, env: dict[str, str] | None = None,
                     queues: str | None = None, stage: str | None = None,
                     app: str = "worker.app") -> subprocess.Popen[bytes]:
        """A real worker in its own session (so its whole process group can be killed); returns once it
        answers a ping. ``stage`` runs that stage's queues and pool (``worker.app.stages``); by default one
        prefork worker takes every queue."""
        from worker.app import stages

        log = open(self.tmp / f"worker-{name}.log", "ab")  # noqa: SIM115 - lives as long as the worker
        metrics_dir = tempfile.mkdtemp(prefix=f"prom-{name}-", dir=self.tmp)
        if stage is not None:
            args = stages()[stage].celery_args(node=f"{name}@%h", concurrency=concurrency)
            if queues is not None:
                args[args.index("-Q") + 1] = queues
        else:
            args = ["worker", "-Q", queues or ",".join(QUEUES), "-c", str(concurrency), "-n", f"{name}@%h",
                    "-l", "INFO"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", app, *args, "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=os.environ | self.env | {"PROMETHEUS_MULTIPROC_DIR": metrics_dir} | (env or {}),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.workers.append(proc)
        self.names.append(name)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"worker {name} exited with {proc.returncode}: {self.log_tail(name)}")
            if self.app.control.ping(destination=[f"{name}@{HOST}"], timeout=0.5):
                return proc
        raise RuntimeError(f"worker {name} did not answer a ping: {self.log_tail(name)}")

    def log_tail(self, name: str, n: int = 3000) -> str:
        path = self.tmp / f"worker-{name}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    @staticmethod
    def kill_group(proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and its pool children at once: nothing gets to ack, requeue or clean up."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

    @staticmethod
    def stop_worker(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def poll(self, feeds: list[Feed]) -> str:
        """Register ``feeds`` and send one poll each, as ``ingest run --once`` does; returns the run id."""
        Schedule(self.r).sync(feeds)
        run_id = uuid.uuid4().hex[:12]
        runs.start(self.r, run_id, [f.id for f in feeds])
        for feed in feeds:
            self.app.send_task("worker.tasks.poll_feed", args=(feed.id, run_id), queue="poll")
        return run_id

    def wait(self, run_id: str, timeout: float = 120) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while runs.pending(self.r, run_id) > 0:
            assert time.monotonic() < deadline, (
                f"run not finished: {runs.totals(self.r, run_id)}, outstanding "
                f"{self.r.smembers(runs.run_key(run_id) + ':todo')}, unacked {self.broker.hlen('unacked')}, "
                f"queues { {q: self.broker.llen(q) for q in QUEUES} }\n"
                + "\n".join(self.log_tail(name, 1500) for name in self.names))
            time.sleep(0.2)
        return runs.totals(self.r, run_id)

    def published(self, stream: str = "articles") -> list[dict[str, Any]]:
        return [json.loads(fields[b"data"]) for _, fields in self.r.xrange(stream)]

    def close(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        self.app.close()
        self.r.close()
        self.broker.close()
        self.server.stop()


@pytest.fixture
def private_redis() -> Iterator[tuple[redis.Redis, str]]:
    """A throwaway Redis of this test's own (client, URL): the shared test database is emptied by other
    suites' fixtures at any moment, and a fault test must not share it."""
    server = RedisServer()
    client = redis.Redis.from_url(server.url)
    yield client, server.url
    client.close()
    server.stop()


def serve_site(server: LocalServer, n: int, seed: int) -> Any:
    site = build_site(server.url(""), n_articles=n, seed=seed)
    server.routes.update(site.routes)
    return site


def article_path(site: Any, i: int) -> str:
    return f"/articles/{site.articles[i].slug}.html"


def assert_published_once(articles: list[dict[str, Any]], server: LocalServer, site: Any) -> None:
    expected = {server.url(f"/articles/{a.slug}.html") for a in site.articles}
    urls = [a["canonical_url"] for a in articles]
    ids = [a["id"] for a in articles]
    assert len(ids) == len(set(ids)), f"an article id was published twice: {sorted(ids)}"
    assert len(urls) == len(set(urls)), "a URL was published twice"
    assert set(urls) == expected, f"missing: {expected - set(urls)}, unexpected: {set(urls) - expected}"


# --- a worker killed mid-fetch ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_worker_killed_mid_fetch_is_redelivered_and_published_once(tmp_path: Path,
                                                                     http_server: LocalServer) -> None:
    """SIGKILL a worker (main process and pool at once) while it is downloading a page: its unacknowledged
    messages stay in Redis's ``unacked`` hash (acks_late). Once they are older than the visibility timeout,
    the next worker to start restores them (kombu restores at start, then every ~100 s), runs the fetch
    again under the same task id (so it re-enters its own article claim), and every article is published
    exactly once."""
    s = Stack(tmp_path, env={"INGEST_VISIBILITY_TIMEOUT": "8"})
    try:
        site = serve_site(http_server, n=4, seed=51)
        slow_path = article_path(site, 0)
        in_fetch = slow_page(http_server, slow_path)
        w1 = s.start_worker("victim")
        run_id = s.poll([Feed(url=http_server.url(site.feed_path), name="killed")])
        assert in_fetch.wait(90), "the worker never fetched the slow page: " + s.log_tail("victim")
        s.kill_group(w1)  # the page takes 3 s to answer: the download is under way
        assert w1.returncode == -signal.SIGKILL

        # The kill left work unacknowledged; nothing of the slow article was published.
        unacked = s.r.zrange("unacked_index", 0, -1, withscores=True)
        assert unacked, "no unacknowledged message left by the killed worker"
        assert runs.pending(s.r, run_id) > 0
        assert all(a["canonical_url"] != http_server.url(slow_path) for a in s.published())

        # Wait out the visibility timeout, then start a second worker: it restores and finishes the work.
        newest = max(score for _, score in unacked)
        time.sleep(max(0.0, newest + 8 + 1 - time.time()))
        s.start_worker("rescuer")
        counts = s.wait(run_id, timeout=150)
        assert_published_once(s.published(), http_server, site)
        assert counts.get("published:articles") == 4, counts
        assert http_server.hits[slow_path] >= 2, "the slow page was not fetched again after the kill"
        assert DeadLetters(s.r).list() == []
        # Everything was acknowledged in the end: nothing left to redeliver.
        wait_until(lambda: s.r.hlen("unacked") == 0, "every message to be acknowledged")
    finally:
        s.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_pool_child_killed_mid_fetch_is_requeued_at_once(tmp_path: Path, http_server: LocalServer) -> None:
    """SIGKILL only the pool process running the fetch: the worker's main process sees the child die
    (WorkerLostError), rejects the message with requeue (``task_reject_on_worker_lost``), a fresh child runs
    it again straight away, with no visibility timeout to wait for, and every article is published once."""
    s = Stack(tmp_path)
    try:
        site = serve_site(http_server, n=3, seed=52)
        slow_path = article_path(site, 1)
        in_fetch = slow_page(http_server, slow_path)
        main = s.start_worker("parent")
        run_id = s.poll([Feed(url=http_server.url(site.feed_path), name="child-killed")])
        assert in_fetch.wait(90), "the worker never fetched the slow page: " + s.log_tail("parent")
        children = Path(f"/proc/{main.pid}/task/{main.pid}/children").read_text().split()
        assert len(children) == 1, children
        os.kill(int(children[0]), signal.SIGKILL)
        counts = s.wait(run_id, timeout=120)
        assert main.poll() is None, "the worker's main process died too"
        assert_published_once(s.published(), http_server, site)
        assert counts.get("published:articles") == 3, counts
        assert http_server.hits[slow_path] >= 2
        assert "WorkerLostError" in s.log_tail("parent", 200_000)
    finally:
        s.close()


# --- Redis restarted under running workers ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_workers_survive_a_redis_restart(tmp_path: Path, http_server: LocalServer) -> None:
    """Redis stopped and started again on the same port while a worker runs: the worker reconnects by
    itself (same process, no restart) and processes the polls sent after the restart; what was published
    before is not published again, and everything polled after the restart is published.

    This Redis runs without persistence, as the throwaway servers do, so the restart empties it: the streams,
    the seen/published memory, the feed schedule and any queued or unacknowledged task are gone. Work queued
    at the moment of a no-persistence restart is lost, and a feed polled again afterwards would be published
    again (its seen-set is gone). In production run Redis with AOF (``appendonly yes``, ``appendfsync
    everysec``; the compose file and the k8s manifests should set it) so a restart keeps queues, memory and
    streams; this test therefore restarts between runs of work, not in the middle of one.
    """
    port = free_port()
    s = Stack(tmp_path, port=port)
    try:
        site_a = serve_site(http_server, n=3, seed=61)
        with LocalServer() as other:
            site_b = serve_site(other, n=3, seed=62)
            worker_proc = s.start_worker("survivor")
            before = s.wait(s.poll([Feed(url=http_server.url(site_a.feed_path), name="before")]))
            assert before.get("published:articles") == 3, before
            assert_published_once(s.published(), http_server, site_a)

            s.server.stop()
            wait_until(lambda: "Connection to broker lost" in s.log_tail("survivor", 200_000),
                       "the worker to notice the lost connection")
            assert worker_proc.poll() is None, "the worker died with Redis: " + s.log_tail("survivor")
            s.server = RedisServer(port)
            assert s.r.ping()
            # No persistence: the restart emptied Redis (the worker may already have re-declared its queues).
            assert not s.r.keys("ingest:*") and not s.r.exists("articles")

            after = s.wait(s.poll([Feed(url=other.url(site_b.feed_path), name="after")]), timeout=150)
            assert after.get("published:articles") == 3, after
            assert worker_proc.poll() is None, "the worker was restarted, not reconnected"
            # Only the articles polled after the restart are on the (new) stream, each once: nothing from
            # before the restart was redelivered or published again.
            assert_published_once(s.published(), other, site_b)
    finally:
        s.close()


# --- a downstream consumer that crashes mid-batch -----------------------------------------------------------

def collect(into: list[str]) -> Callable[[str, dict[str, Any]], bool]:
    def handle(_entry_id: str, article: dict[str, Any]) -> bool:
        into.append(article["id"])
        return True

    return handle


CRASHING_CONSUMER = """
import os, sys, redis
from worker.publish.consume import Consumer
r = redis.Redis.from_url(sys.argv[1])
handled = 0
def handle(entry_id, article):
    global handled
    handled += 1
    print(article["id"], flush=True)
    if handled == 3:
        os._exit(17)  # dies while handling its third message: it is never acknowledged
    return True
Consumer(r, sys.argv[2], sys.argv[3], "c1", claim_idle=60).run(handle, follow=False)
"""


def wait_idle(r: redis.Redis, stream: str, group: str, seconds: float) -> None:
    """Until every pending message of ``group`` has been idle (unacknowledged) for at least ``seconds``."""
    def idle() -> bool:
        pending = r.xpending_range(stream, group, min="-", max="+", count=1000)
        return all(p["time_since_delivered"] >= seconds * 1000 for p in pending)

    wait_until(idle, f"the pending messages to be idle {seconds} s")


@pytest.mark.timeout(120)
def test_consumer_crash_mid_batch_is_reclaimed_by_another(private_redis: tuple[redis.Redis, str]) -> None:
    """A consumer-group member dies mid-batch (a real process, ``os._exit``): what it read but did not
    acknowledge stays pending under its name; another member reclaims it with XAUTOCLAIM once it has been idle
    ``claim_idle`` seconds, through ``worker.publish.consume.Consumer`` and through ``ingest tail --group``."""
    redis_client, redis_url = private_redis
    stream, group = "faults.articles", "indexer"
    ids = [f"{i:016x}" for i in range(10)]
    for aid in ids:
        redis_client.xadd(stream, {"id": aid, "data": json.dumps({"id": aid, "title": f"t{aid}"})})

    crashed = subprocess.run([sys.executable, "-c", CRASHING_CONSUMER, redis_url, stream, group],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert crashed.returncode == 17, crashed.stderr[-2000:]
    assert crashed.stdout.split() == ids[:3]
    pending = redis_client.xpending(stream, group)
    assert pending["pending"] == 8  # 2 acknowledged; the third (mid-handling) and the 7 not yet handled
    assert {c["name"]: c["pending"] for c in pending["consumers"]} == {b"c1": 8}

    # Not idle long enough yet: a member with a long claim_idle reclaims nothing.
    patient = Consumer(redis_client, stream, group, "c3", claim_idle=3600)
    assert patient.reclaim() == []

    # The CLI member c2 reclaims everything c1 left, prints it, acknowledges it, once it has been idle long enough.
    wait_idle(redis_client, stream, group, 0.6)
    tail = subprocess.run(
        [sys.executable, "-m", "worker.cli", "tail", stream, "--group", group, "--consumer", "c2",
         "--claim-idle", "0.5", "--no-follow", "--json"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=os.environ | {"REDIS_URL": redis_url})
    assert tail.returncode == 0, tail.stderr[-2000:]
    reclaimed = [json.loads(line)["id"] for line in tail.stdout.splitlines()]
    assert reclaimed == ids[2:], reclaimed
    assert redis_client.xpending(stream, group)["pending"] == 0

    # A new message after the crash goes to whichever member reads next, exactly once.
    redis_client.xadd(stream, {"id": "f" * 16, "data": json.dumps({"id": "f" * 16})})
    got: list[str] = []
    Consumer(redis_client, stream, group, "c3", claim_idle=0.5).run(collect(got), follow=False)
    assert got == ["f" * 16]
    assert redis_client.xpending(stream, group)["pending"] == 0


@pytest.mark.timeout(120)
def test_consumer_reclaims_in_process(private_redis: tuple[redis.Redis, str]) -> None:
    """The same with two ``Consumer`` objects: c1's handler raises mid-batch (an in-process crash), c2's
    ``run`` reclaims exactly the unacknowledged messages, in order, and acknowledges them."""
    redis_client = private_redis[0]
    stream, group = "faults.inproc", "g"
    ids = [f"{i:016x}" for i in range(6)]
    for aid in ids:
        redis_client.xadd(stream, {"id": aid, "data": json.dumps({"id": aid})})

    class Crash(Exception):
        pass

    def crash_on_fourth(_eid: str, art: dict[str, Any]) -> bool:
        if art["id"] == ids[3]:
            raise Crash
        return True

    c1 = Consumer(redis_client, stream, group, "c1", claim_idle=60)
    with pytest.raises(Crash):
        c1.run(crash_on_fourth, follow=False)
    assert redis_client.xpending(stream, group)["pending"] == 3
    c2 = Consumer(redis_client, stream, group, "c2", claim_idle=0.2)
    wait_idle(redis_client, stream, group, 0.3)
    got: list[str] = []
    c2.run(collect(got), follow=False)
    assert got == ids[3:]
    assert redis_client.xpending(stream, group)["pending"] == 0


# --- misbehaving feed servers -------------------------------------------------------------------------------


def drip(handler: BaseHTTPRequestHandler) -> None:
    """Headers at once, then one byte every 0.3 s for 30 s: each read is quick, only the total is too long."""
    body = b"<?xml version='1.0'?><rss version='2.0'><channel><title>slow</title>" + b" " * 200
    handler.send_response(200)
    handler.send_header("Content-Type", "application/rss+xml")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    for byte in body[:100]:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(0.3)


def reset(handler: BaseHTTPRequestHandler) -> None:
    """Abort the connection with a TCP RST before any response byte."""
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.connection.close()
    handler.close_connection = True
    handler.wfile = io.BytesIO()


def redirect_to(path: str) -> Response:
    return Response(b"", "text/plain", 302, {"Location": path})


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_failing_feeds_back_off_and_dead_letter_while_others_publish(tmp_path: Path,
                                                                      http_server: LocalServer) -> None:
    """Four broken feeds (slow beyond total_timeout, 503, connection reset, redirect loop) polled in the same
    run as a healthy one: each broken feed gets a dead letter with its reason and backs off (error count up,
    next poll in the future, growing with every failure), and the healthy feed is published in full."""
    s = Stack(tmp_path, env={"INGEST_TOTAL_TIMEOUT": "2", "INGEST_READ_TIMEOUT": "1.5",
                             "INGEST_CONNECT_TIMEOUT": "1"})
    try:
        site = serve_site(http_server, n=3, seed=71)
        http_server.routes["/bad/slow.xml"] = quietly(drip)
        http_server.routes["/bad/down.xml"] = Response(b"maintenance", "text/plain", 503)
        http_server.routes["/bad/reset.xml"] = quietly(reset)
        http_server.routes["/bad/loop-a.xml"] = redirect_to("/bad/loop-b.xml")
        http_server.routes["/bad/loop-b.xml"] = redirect_to("/bad/loop-a.xml")
        bad = {
            "slow": (Feed(url=http_server.url("/bad/slow.xml"), interval=10), {"timeout"}),
            "down": (Feed(url=http_server.url("/bad/down.xml"), interval=10), {"http_5xx"}),
            "reset": (Feed(url=http_server.url("/bad/reset.xml"), interval=10), {"connect", "protocol"}),
            "loop": (Feed(url=http_server.url("/bad/loop-a.xml"), interval=10), {"redirect_loop"}),
        }
        good = Feed(url=http_server.url(site.feed_path), name="good")
        feeds = [good, *(f for f, _ in bad.values())]
        s.start_worker("feeds", concurrency=2)

        started = time.time()
        counts = s.wait(s.poll(feeds))
        assert counts.get("polled:new_entries") == 1 and counts.get("polled:error") == 4, counts
        assert counts.get("published:articles") == 3, counts
        assert_published_once(s.published(), http_server, site)

        sched = Schedule(s.r)
        letters = DeadLetters(s.r).list()
        first_delay: dict[str, float] = {}
        for name, (feed, reasons) in bad.items():
            state = sched.state(feed.id)
            assert state.errors == 1, (name, sched.describe(feed.id))
            due = s.r.zscore(due_key(), feed.id)
            assert due is not None and due > started + 30, (name, due, started)  # backed off, not due again
            first_delay[name] = due - started
            mine = [dl for dl in letters if dl.url == feed.url]
            assert len(mine) == 1 and mine[0].stage == "poll", (name, [d.as_dict() for d in letters])
            assert mine[0].reason in reasons, (name, mine[0].as_dict())
        assert sched.state(good.id).errors == 0
        assert not [dl for dl in letters if dl.url == good.url]

        # A second failure: the error count grows and the backoff doubles (60 s, then 120 s, ±10 %).
        second = time.time()
        counts = s.wait(s.poll(feeds))
        assert counts.get("polled:error") == 4 and counts.get("polled:not_modified") == 1, counts
        for name, (feed, _) in bad.items():
            assert sched.state(feed.id).errors == 2, name
            delay = (s.r.zscore(due_key(), feed.id) or 0) - second
            assert delay > first_delay[name] + 20, (name, delay, first_delay[name])
        assert len(DeadLetters(s.r).list()) == 8
        assert len(s.published()) == 3
    finally:
        s.close()
