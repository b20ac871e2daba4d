"""The Celery broker on a Redis of its own (``INGEST_BROKER_URL``) and the state on ``REDIS_URL``: a one-shot run
and long-running stage workers publish every article, the state store holds none of kombu's keys, the broker
none of ours, every command reads each Redis for what it holds (queue lengths from the broker), and a broker
that cannot be reached is named by its own setting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from tests.conftest import ROOT, stop_worker
from tests.waiting import wait_until
from worker.app import stages
from worker.core import runs
from worker.core.redisconn import RedisServer, free_port
from worker.demo.server import LocalServer
from worker.demo.site import build_site
from worker.feeds.feedlist import Feed, save_feeds
from worker.poll.schedule import Schedule

KOMBU_KEYS = (b"_kombu", b"unacked", b"celery", b"poll", b"fetch", b"extract", b"publish")


@pytest.fixture
def broker() -> Iterator[RedisServer]:
    """A Redis server of its own for the broker: the state stays on the suite's Redis."""
    server = RedisServer()
    yield server
    server.stop()


def ingest(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=os.environ | env, stdin=subprocess.DEVNULL)


def kombu_keys(r: redis.Redis) -> set[bytes]:
    return {k for k in r.scan_iter(count=1000) if k.startswith(KOMBU_KEYS)}


def assert_apart(state: redis.Redis, broker: redis.Redis, before: set[bytes]) -> None:
    """``before``: the broker's keys the state database held already (the suite's own workers' exchange
    bindings, which the test database keeps between tests when it is also the suite's broker)."""
    broker_keys = list(broker.scan_iter(count=1000))
    kombu_in_state = sorted(kombu_keys(state) - before)
    assert not kombu_in_state, f"the broker's keys in the state store: {kombu_in_state[:10]}"
    ours_in_broker = [k for k in broker_keys if k.startswith(b"ingest:") and not k.startswith(b"ingest:redbeat")]
    assert not ours_in_broker, f"state keys in the broker: {ours_in_broker[:10]}"
    assert any(k.startswith(b"_kombu.binding") for k in broker_keys), "the broker was never used"


def test_one_shot_run_with_the_broker_apart(redis_client: redis.Redis, broker: RedisServer,
                                            http_server: LocalServer, tmp_path: Path) -> None:
    site = build_site(http_server.url(""), n_articles=5, seed=31)
    http_server.routes.update(site.routes)
    feeds = tmp_path / "feeds.yaml"
    save_feeds(feeds, [Feed(url=http_server.url(site.feed_path), name="apart")])
    env = {"INGEST_BROKER_URL": broker.url}
    before = kombu_keys(redis_client)
    out = ingest("run", "--once", "--json", "--feeds", str(feeds), env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["finished"] and summary["counts"]["published:articles"] == 5, summary
    assert redis_client.xlen("articles") == 5
    broker_client = redis.Redis.from_url(broker.url)
    assert_apart(redis_client, broker_client, before)

    # stats reads the queues from the broker: a message waiting there shows, none is invented from the state
    broker_client.lpush("extract", json.dumps({"headers": {"enqueued_at": 1.0}}))
    stats = ingest("stats", "--json", env=env, timeout=60)
    assert stats.returncode == 0, stats.stderr
    data = json.loads(stats.stdout)
    assert data["queues"]["extract"]["depth"] == 1 and data["queues"]["fetch"]["depth"] == 0, data
    assert data["totals"]["published:articles"] == 5, data


def test_an_unreachable_broker_is_named(redis_client: redis.Redis, tmp_path: Path) -> None:
    feeds = tmp_path / "feeds.yaml"
    save_feeds(feeds, [Feed(url="http://127.0.0.1:9/feed.xml")])
    env = {"INGEST_BROKER_URL": "redis://127.0.0.1:1/0"}
    for args in (("stats",), ("run", "--once", "--feeds", str(feeds)), ("beat",)):
        out = ingest(*args, env=env, timeout=60)
        errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
        assert out.returncode == 1 and "Traceback" not in out.stderr, (args, out.stderr[-2000:])
        assert len(errors) == 1 and "INGEST_BROKER_URL" in errors[0] and "redis://127.0.0.1:1/0" in errors[0], \
            (args, out.stderr[-2000:])


def _start(stage: str, broker_url: str, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    """A stage's worker on the broker apart, answering a ping through that broker."""
    log = open(ROOT / ".pytest_cache" / f"worker-{name}.log", "wb")  # noqa: SIM115 - lives as long as the worker
    args = stages()[stage].celery_args(node=f"{name}@%h", concurrency=4 if stage == "download" else 1)
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "worker.app", *args, "--without-gossip",
                             "--without-mingle"], cwd=ROOT, env=os.environ | env, stdout=log, stderr=subprocess.STDOUT)
    control = Celery(broker=broker_url)
    wait_until(lambda: proc.poll() is not None or control.control.ping(
        destination=[f"{name}@{os.uname().nodename}"], timeout=0.5), f"worker {name} to answer (see {log.name})")
    assert proc.poll() is None, f"worker {name} exited; see {log.name}"
    return proc


def test_stage_workers_with_the_broker_apart(redis_client: redis.Redis, broker: RedisServer,
                                             http_server: LocalServer) -> None:
    (ROOT / ".pytest_cache").mkdir(exist_ok=True)
    site = build_site(http_server.url(""), n_articles=6, seed=32)
    http_server.routes.update(site.routes)
    feed = Feed(url=http_server.url(site.feed_path), name="apart workers")
    Schedule(redis_client).sync([feed])
    port = free_port()
    env = {"INGEST_BROKER_URL": broker.url, "INGEST_METRICS_PORT": str(port)}
    before = kombu_keys(redis_client)
    procs = [_start("download", broker.url, env, "apart-download"),
             _start("extract", broker.url, env | {"INGEST_METRICS_PORT": "0"}, "apart-extract")]
    try:
        runs.start(redis_client, "apart", [feed.id])
        sender = Celery(broker=broker.url)
        sender.send_task("worker.tasks.poll_feed", args=(feed.id, "apart"), queue="poll")
        wait_until(lambda: runs.pending(redis_client, "apart") == 0, "the run to finish",
                   details=lambda: runs.totals(redis_client, "apart"))
        assert redis_client.xlen("articles") == 6
        assert_apart(redis_client, redis.Redis.from_url(broker.url), before)
        # the metrics read the queues from the broker and the feeds from the state store
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
        assert 'ingest_queue_depth{queue="fetch"} 0.0' in text, text[-2000:]
        assert "\ningest_feeds 1.0" in text, text[-2000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as response:
            assert response.status == 200
    finally:
        for proc in procs:
            stop_worker(proc)


def test_a_cluster_that_cannot_be_used_is_one_line(redis_client: redis.Redis) -> None:
    """State on a cluster whose node cannot be reached, or a URL that is no cluster node: one line naming
    REDIS_URL and INGEST_REDIS_CLUSTER, never a traceback."""
    for state in ("redis://127.0.0.1:1/0", "redis://127.0.0.1:6379/3"):
        out = ingest("stats", env={"REDIS_URL": state, "INGEST_REDIS_CLUSTER": "true",
                                   "INGEST_BROKER_URL": "redis://127.0.0.1:1/0"}, timeout=60)
        errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
        assert len(errors) == 1 and "Redis Cluster" in errors[0] and "REDIS_URL" in errors[0], out.stderr[-2000:]
