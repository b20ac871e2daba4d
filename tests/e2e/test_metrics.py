"""Metrics: the multiprocess-aggregated HTTP endpoint, health probes, and queue depth/age from real Redis."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery, signals
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

from worker import metrics
from worker.core import runs
from worker.core.redisconn import RedisServer, free_port
from worker.feeds.feedlist import Feed
from worker.poll.schedule import Schedule

EXPECTED_NAMES = {
    "ingest_feeds_polled_total", "ingest_entries_seen_total", "ingest_entries_new_total",
    "ingest_pages_fetched_total", "ingest_fetch_seconds", "ingest_extract_seconds",
    "ingest_lines_removed_total",
    "ingest_duplicates_total", "ingest_articles_published_total", "ingest_dead_letters_total",
    "ingest_dispatch_seconds", "ingest_feeds_due", "ingest_queue_depth", "ingest_queue_oldest_age_seconds",
    "ingest_task_seconds", "ingest_tasks_total", "ingest_feeds", "ingest_feeds_failing", "ingest_feeds_invalid",
    "ingest_feed_consecutive_errors",
    "ingest_host_wait_seconds", "ingest_host_busy_total", "ingest_host_pauses_total",
    "ingest_robots_decisions_total", "ingest_robots_fetches_total",
    "ingest_websub_deliveries_total", "ingest_websub_subscriptions_total",
    "ingest_downloads_in_flight", "ingest_handoff_bytes", "ingest_tasks_in_progress", "ingest_host_waiting",
}


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _kombu_message(enqueued_at: float | None) -> str:
    """A message shaped like the ones kombu's Redis transport stores (protocol 2, JSON)."""
    headers: dict[str, object] = {"lang": "py", "task": "worker.tasks.fetch_article", "id": "x"}
    if enqueued_at is not None:
        headers["enqueued_at"] = enqueued_at
    return json.dumps({
        "body": "W1tdLCB7fSwge31d", "content-encoding": "utf-8", "content-type": "application/json",
        "headers": headers, "properties": {"delivery_tag": "t", "priority": 0},
    })


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A private Redis: the suite's shared one has a running worker that would consume these test queues."""
    server = RedisServer()
    yield server.url
    server.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def server(redis_client: redis.Redis) -> Iterator[str]:
    srv = metrics.start_http_server(0, "127.0.0.1", redis_client=redis_client)
    try:
        yield f"http://127.0.0.1:{srv.server_port}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_multiprocess_dir_is_set() -> None:
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == metrics.MULTIPROC_DIR
    assert os.path.isdir(metrics.MULTIPROC_DIR)
    # Values are file-backed, so pool children's figures reach the parent's scrape.
    assert type(metrics.ENTRIES_SEEN._value).__name__ == "MmapedValue"


def test_exported_names_are_the_agreed_ones() -> None:
    assert metrics.exported_metric_names() == EXPECTED_NAMES


def test_scrape_shows_every_metric(server: str, redis_client: redis.Redis) -> None:
    ok, broken = Feed(url="http://example.com/ok.xml"), Feed(url="http://example.com/broken.xml", name="Broken")
    schedule = Schedule(redis_client)
    schedule.sync([ok, broken])
    schedule.record_problems(["feeds.yaml:3: feed #2: url: not an http(s) URL: 'x'", "feeds.yaml:5: feed #3: ..."])
    for _ in range(3):
        schedule.record_failure(broken, reason="http_5xx")
    metrics.FEEDS_POLLED.labels("new_entries").inc()
    metrics.ENTRIES_SEEN.inc(3)
    metrics.ENTRIES_NEW.inc(2)
    metrics.PAGES_FETCHED.labels("ok").inc()
    metrics.FETCH_SECONDS.observe(0.3)
    metrics.EXTRACT_SECONDS.observe(0.02)
    metrics.LINES_REMOVED.labels("boilerplate").inc(4)
    metrics.DUPLICATES.labels("exact").inc()
    metrics.ARTICLES_PUBLISHED.labels("articles").inc()
    metrics.DEAD_LETTERS.labels("fetch_error").inc()
    metrics.DISPATCH_SECONDS.observe(0.004)
    metrics.FEEDS_DUE.set(7)
    metrics.TASK_SECONDS.labels("worker.tasks.poll_feed").observe(0.1)
    metrics.TASKS.labels("worker.tasks.poll_feed", "success").inc()
    metrics.HOST_WAIT_SECONDS.labels("page").observe(0.2)
    metrics.HOST_BUSY.labels("feed").inc()
    metrics.HOST_PAUSES.labels("page").inc()
    metrics.ROBOTS_DECISIONS.labels("allowed").inc()
    metrics.ROBOTS_FETCHES.labels("rules").inc()
    metrics.WEBSUB_DELIVERIES.labels("accepted").inc()
    metrics.WEBSUB_SUBSCRIPTIONS.labels("verified").inc()
    metrics.DOWNLOADS_IN_FLIGHT.labels("page").inc()
    metrics.HANDOFF_BYTES.observe(20_000)
    metrics.TASKS_IN_PROGRESS.labels("worker.tasks.extract_article").inc()
    runs.put_off(redis_client, "fetch", 3)

    status, text = _get(server + "/metrics")
    assert status == 200
    names = {s[0] for s in _samples(text)}
    for name in EXPECTED_NAMES:
        if name in {"ingest_fetch_seconds", "ingest_extract_seconds", "ingest_dispatch_seconds",
                    "ingest_task_seconds", "ingest_host_wait_seconds", "ingest_handoff_bytes"}:
            assert name + "_bucket" in names and name + "_count" in names, name
        else:
            assert name in names, name
    samples = _samples(text)
    assert samples[("ingest_feeds_due", ())] == 7
    assert samples[("ingest_queue_depth", (("queue", "fetch"),))] == 0
    assert samples[("ingest_feeds", ())] == 2 and samples[("ingest_feeds_failing", ())] == 1
    assert samples[("ingest_host_waiting", (("stage", "fetch"),))] == 3
    assert samples[("ingest_host_waiting", (("stage", "poll"),))] == 0
    assert samples[("ingest_downloads_in_flight", (("kind", "page"),))] >= 1
    assert samples[("ingest_feeds_invalid", ())] == 2
    assert samples[("ingest_feed_consecutive_errors", (("feed", "Broken"), ("feed_id", broken.id)))] == 3


def test_counts_of_forked_children_are_summed(server: str) -> None:
    """The point of multiprocess mode: a prefork child's increments show up in the parent's scrape."""
    before = _samples(_get(server + "/metrics")[1]).get(("ingest_entries_seen_total", ()), 0.0)

    def child() -> None:
        metrics.ENTRIES_SEEN.inc(5)

    ctx = multiprocessing.get_context("fork")
    for _ in range(2):
        proc = ctx.Process(target=child)
        proc.start()
        proc.join(10)
        assert proc.exitcode == 0
    metrics.ENTRIES_SEEN.inc(1)

    after = _samples(_get(server + "/metrics")[1])[("ingest_entries_seen_total", ())]
    assert after - before == 11


def test_health_and_readiness(server: str) -> None:
    assert _get(server + "/healthz") == (200, "ok\n")
    assert _get(server + "/readyz") == (200, "ready\n")


def test_not_ready_when_redis_is_gone() -> None:
    dead = redis.Redis(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
    srv = metrics.start_http_server(0, "127.0.0.1", redis_client=dead)
    try:
        base = f"http://127.0.0.1:{srv.server_port}"
        assert _get(base + "/healthz")[0] == 200
        assert _get(base + "/readyz")[0] == 503
        # The scrape still works; only the queue series are missing.
        status, text = _get(base + "/metrics")
        assert status == 200
        assert "ingest_queue_depth" not in text
        assert "ingest_entries_seen_total" in text
    finally:
        srv.shutdown()
        srv.server_close()


def test_queue_depth_and_age_from_redis(redis_client: redis.Redis, server: str) -> None:
    now = time.time()
    # kombu LPUSHes, so the right end is the oldest; a priority sub-list counts towards its queue too.
    redis_client.lpush("fetch", _kombu_message(now - 40))
    redis_client.lpush("fetch", _kombu_message(now - 10))
    redis_client.lpush("fetch\x06\x163", _kombu_message(now - 90))
    redis_client.lpush("publish", _kombu_message(None))  # a publisher without the header: depth, no age

    figures = metrics.queue_depths(redis_client, now=now)
    assert figures["fetch"][0] == 3
    assert figures["fetch"][1] == pytest.approx(90, abs=0.01)
    assert figures["publish"] == (1, None)
    assert figures["poll"] == (0, None)

    samples = _samples(_get(server + "/metrics")[1])
    assert samples[("ingest_queue_depth", (("queue", "fetch"),))] == 3
    assert samples[("ingest_queue_oldest_age_seconds", (("queue", "fetch"),))] >= 90
    assert samples[("ingest_queue_depth", (("queue", "publish"),))] == 1
    assert samples[("ingest_queue_oldest_age_seconds", (("queue", "publish"),))] == 0


def test_real_celery_publish_is_stamped_and_measured(redis_client: redis.Redis, redis_url: str) -> None:
    """Publish through Celery/kombu for real: the header lands in the stored message, oldest at index -1."""
    app = Celery("metrics-test", broker=redis_url, set_as_current=False)
    signals.before_task_publish.connect(metrics.on_before_task_publish, dispatch_uid="test.metrics.publish")
    try:
        start = time.time()
        app.send_task("worker.tasks.fetch_article", args=["a"], queue="fetch")
        time.sleep(0.2)
        app.send_task("worker.tasks.fetch_article", args=["b"], queue="fetch")
        app.send_task("worker.tasks.fetch_article", args=["c"], queue="fetch", priority=5)
    finally:
        signals.before_task_publish.disconnect(dispatch_uid="test.metrics.publish")
        app.close()
    oldest = json.loads(redis_client.lindex("fetch", -1) or b"{}")
    assert oldest["headers"]["enqueued_at"] == pytest.approx(start, abs=0.15)
    depth, age = metrics.queue_depths(redis_client, ["fetch"], now=start + 1.0)["fetch"]
    assert depth == 3
    assert age == pytest.approx(1.0, abs=0.15)


def test_task_signals_time_and_count() -> None:
    class FakeTask:
        name = "worker.tasks.publish_article"

    def value(state: str) -> float:
        return REGISTRY.get_sample_value(
            "ingest_tasks_total", {"task": FakeTask.name, "state": state}
        ) or 0.0

    def observed() -> float:
        return REGISTRY.get_sample_value("ingest_task_seconds_count", {"task": FakeTask.name}) or 0.0

    ok, failed, timed = value("success"), value("failure"), observed()
    metrics.on_task_prerun(task_id="1", task=FakeTask())
    metrics.on_task_postrun(task_id="1", task=FakeTask(), state="SUCCESS")
    metrics.on_task_prerun(task_id="2", task=FakeTask())
    metrics.on_task_postrun(task_id="2", task=FakeTask(), state="FAILURE")
    assert value("success") == ok + 1
    assert value("failure") == failed + 1
    assert observed() == timed + 2

    from billiard.exceptions import TimeLimitExceeded

    killed = value("time_limit")
    metrics.on_task_failure(sender=FakeTask(), exception=TimeLimitExceeded(120))
    metrics.on_task_failure(sender=FakeTask(), exception=ValueError("counted by postrun instead"))
    assert value("time_limit") == killed + 1


def test_sweep_forgets_dead_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=lambda: None)
    proc.start()
    proc.join(10)
    dead_pid = proc.pid
    assert dead_pid is not None
    live_gauge = tmp_path / f"gauge_livemostrecent_{dead_pid}.db"
    counter = tmp_path / f"counter_{dead_pid}.db"
    mine = tmp_path / f"counter_{os.getpid()}.db"
    for f in (live_gauge, counter, mine):
        f.write_bytes(b"")

    assert metrics.sweep_dead_processes(str(tmp_path)) == 1
    assert not live_gauge.exists()
    assert counter.exists()  # a dead child's counts still count...
    metrics.sweep_dead_processes(str(tmp_path), drop_all_files=True)
    assert not counter.exists()  # ...except at worker start, where they are a previous run's
    assert mine.exists()


E2E_APP = '''
import os

from celery import Celery

from worker import metrics

app = Celery("e2e", broker=os.environ["E2E_BROKER"])
app.conf.update(
    task_default_queue="fetch", worker_hijack_root_logger=False, broker_connection_retry_on_startup=True
)
metrics.install(app, port=int(os.environ["E2E_PORT"]))


@app.task(name="e2e.count")
def count(n):
    metrics.ENTRIES_SEEN.inc(n)
    metrics.FEEDS_DUE.set(n)
'''


def test_prefork_worker_serves_the_sum_of_its_children(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """A real `celery worker --pool prefork -c 2` with install(): one scrape shows what both children did."""
    import subprocess
    import sys

    (tmp_path / "e2e_app.py").write_text(E2E_APP)
    port = free_port()
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    env = {
        **os.environ, "E2E_BROKER": redis_url, "E2E_PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).resolve().parents[2])]),
    }
    sender = Celery("sender", broker=redis_url, set_as_current=False)
    signals.before_task_publish.connect(metrics.on_before_task_publish, dispatch_uid="test.metrics.e2e")
    try:
        for n in range(1, 21):
            sender.send_task("e2e.count", args=[n], queue="fetch")
    finally:
        signals.before_task_publish.disconnect(dispatch_uid="test.metrics.e2e")
        sender.close()
    depth, age = metrics.queue_depths(redis_client, ["fetch"])["fetch"]
    assert depth == 20 and age is not None

    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "e2e_app", "worker", "--pool", "prefork", "-c", "2",
         "-Q", "fetch", "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "warning"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        while time.monotonic() < deadline:
            try:
                samples = _samples(_get(f"http://127.0.0.1:{port}/metrics")[1])
            except OSError:
                samples = {}
            if samples.get(("ingest_tasks_total", (("state", "success"), ("task", "e2e.count")))) == 20:
                break
            assert proc.poll() is None, "worker exited early"
            time.sleep(0.3)
        assert samples.get(("ingest_tasks_total", (("state", "success"), ("task", "e2e.count")))) == 20
        assert samples[("ingest_entries_seen_total", ())] == sum(range(1, 21))
        assert samples[("ingest_task_seconds_count", (("task", "e2e.count"),))] == 20
        assert samples[("ingest_queue_depth", (("queue", "fetch"),))] == 0
        assert 1 <= samples[("ingest_feeds_due", ())] <= 20
        assert _get(f"http://127.0.0.1:{port}/readyz")[0] == 200
        # Both children wrote their own files (the point of multiprocess mode); pids other than the parent's.
        pids = {p.name.rsplit("_", 1)[-1] for p in multiproc.glob("counter_*.db")}
        assert len(pids - {f"{proc.pid}.db"}) >= 1
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
