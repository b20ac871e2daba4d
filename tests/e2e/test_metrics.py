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
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.e2e.test_faults import Stack
from tests.e2e.test_security import article_html, rss
from tests.waiting import wait_until
from worker import metrics
from worker.core import runs
from worker.core.redisconn import RedisServer, free_port
from worker.demo.server import LocalServer, Response
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


def test_scrape_reads_feed_and_queue_figures_from_redis(server: str, redis_client: redis.Redis) -> None:
    """The gauges computed at scrape time from Redis: the feed list, the failing feeds with their error
    counts, and every queue's depth."""
    ok, broken = Feed(url="http://example.com/ok.xml"), Feed(url="http://example.com/broken.xml", name="Broken")
    schedule = Schedule(redis_client)
    schedule.sync([ok, broken])
    schedule.record_problems(["feeds.yaml:3: feed #2: url: not an http(s) URL: 'x'", "feeds.yaml:5: feed #3: ..."])
    for _ in range(3):
        schedule.record_failure(broken, reason="http_5xx")
    redis_client.lpush("fetch", _kombu_message(time.time()))
    runs.put_off(redis_client, "fetch", 3)  # three pages waiting for their hosts' turns
    status, text = _get(server + "/metrics")
    assert status == 200
    samples = _samples(text)
    assert samples[("ingest_feeds", ())] == 2 and samples[("ingest_feeds_failing", ())] == 1
    assert samples[("ingest_host_waiting", (("stage", "fetch"),))] == 3
    assert samples[("ingest_host_waiting", (("stage", "poll"),))] == 0
    assert samples[("ingest_feeds_invalid", ())] == 2
    assert samples[("ingest_feed_consecutive_errors", (("feed", "Broken"), ("feed_id", broken.id)))] == 3
    assert samples[("ingest_queue_depth", (("queue", "fetch"),))] == 1
    assert samples[("ingest_queue_depth", (("queue", "poll"),))] == 0


def _total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(value for (sample, have), value in samples.items()
               if sample == name and set(labels.items()) <= set(have))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_real_workers_scrape_counts_the_work_it_did(tmp_path: Path, http_server: LocalServer) -> None:
    """A real worker (its own Redis, robots.txt obeyed, metrics port on) polls a feed of five entries: three
    articles, a copy of the first at another URL, and a page that answers 404. Its ``/metrics`` then shows
    exactly that work, counted by the code that did it: one poll with new entries, five entries seen and new,
    four pages fetched and one 404, three articles published, one duplicate, one dead letter, five robots
    checks from one robots.txt download, and every finished task timed."""
    pages = {f"/m/story-{i}.html": article_html(f"Harbour council story number {i} today", i) for i in range(3)}
    for path, body in pages.items():
        http_server.routes[path] = Response(body)
    http_server.routes["/m/copy.html"] = Response(pages["/m/story-0.html"])
    links = [*pages, "/m/copy.html", "/m/missing.html"]
    http_server.routes["/m/feed.xml"] = Response(
        rss([{"title": f"entry {i}", "link": http_server.url(p), "guid": p} for i, p in enumerate(links)]),
        "application/rss+xml")
    port = free_port()
    s = Stack(tmp_path, env={"INGEST_ROBOTS_OBEY": "true", "INGEST_CLEAN_HOLD_SECONDS": "0",
                             "INGEST_METRICS_PORT": str(port)})
    try:
        s.start_worker("metered")
        counts = s.wait(s.poll([Feed(url=http_server.url("/m/feed.xml"), name="metered")]))
        assert counts.get("published:articles") == 3, counts
        expected = {
            ("ingest_feeds_polled_total", (("outcome", "new_entries"),)): 1,
            ("ingest_entries_seen_total", ()): 5,
            ("ingest_entries_new_total", ()): 5,
            ("ingest_pages_fetched_total", (("status", "ok"),)): 4,
            ("ingest_pages_fetched_total", (("status", "http_4xx"),)): 1,
            ("ingest_articles_published_total", (("stream", "articles"),)): 3,
            ("ingest_dead_letters_total", (("reason", "http_4xx"),)): 1,
            ("ingest_robots_decisions_total", (("decision", "allowed"),)): 5,
            ("ingest_robots_fetches_total", (("result", "allow_all"),)): 1,
            ("ingest_extract_seconds_count", ()): 4,
            ("ingest_feeds", ()): 1,
            ("ingest_feeds_failing", ()): 0,
        }
        scrape: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

        def settled() -> bool:
            # the run's counters are written inside the tasks, the task metrics just after them
            nonlocal scrape
            scrape = _samples(_get(f"http://127.0.0.1:{port}/metrics")[1])
            finished = _total(scrape, "ingest_tasks_total")
            return all(scrape.get(k) == v for k, v in expected.items()) and finished >= 6 and (
                finished == _total(scrape, "ingest_task_seconds_count"))

        wait_until(settled, "the scrape to show the run", details=lambda: {
            k: scrape.get(k) for k in expected} | {"tasks": _total(scrape, "ingest_tasks_total")})
        assert _total(scrape, "ingest_duplicates_total") == 1
        assert _total(scrape, "ingest_tasks_total", state="success") == _total(scrape, "ingest_tasks_total")
        # one timed download each of the feed and the five pages, each in a host slot, and robots.txt's
        assert _total(scrape, "ingest_fetch_seconds_count") == 6
        assert _total(scrape, "ingest_host_wait_seconds_count", kind="feed") == 1
        assert _total(scrape, "ingest_host_wait_seconds_count", kind="page") == 5
        assert _total(scrape, "ingest_host_wait_seconds_count", kind="robots") == 1
        assert all(v == 0 for (name, _), v in scrape.items() if name == "ingest_queue_depth")
    finally:
        s.close()


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
    """Publish through Celery/kombu for real: the header lands in the stored message, the first one sent is
    the oldest, at index -1, and the queue's age is counted from its stamp."""
    app = Celery("metrics-test", broker=redis_url, set_as_current=False)
    signals.before_task_publish.connect(metrics.on_before_task_publish, dispatch_uid="test.metrics.publish")
    try:
        before = time.time()
        app.send_task("worker.tasks.fetch_article", args=["a"], queue="fetch")
        after = time.time()
        app.send_task("worker.tasks.fetch_article", args=["b"], queue="fetch")
        app.send_task("worker.tasks.fetch_article", args=["c"], queue="fetch", priority=5)
    finally:
        signals.before_task_publish.disconnect(dispatch_uid="test.metrics.publish")
        app.close()
    oldest = json.loads(redis_client.lindex("fetch", -1) or b"{}")
    assert oldest["headers"]["argsrepr"] == "['a']"
    stamped = oldest["headers"]["enqueued_at"]
    assert before <= stamped <= after
    depth, age = metrics.queue_depths(redis_client, ["fetch"], now=stamped + 1.0)["fetch"]
    assert depth == 3
    assert age == pytest.approx(1.0)


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


@app.task(name="e2e.fail")
def fail():
    raise ValueError("a task that fails")


@app.task(name="e2e.stuck", time_limit=1)
def stuck():
    import time
    time.sleep(60)  # killed by the hard time limit long before
'''


def test_prefork_worker_serves_the_sum_of_its_children(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """A real `celery worker --pool prefork -c 2` with install(): one scrape shows what both children did,
    through Celery's own signals: every task timed and counted by its final state, a failing task as
    ``failure`` and a task killed by its hard time limit as ``time_limit`` (the killed child never reports)."""
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
        sender.send_task("e2e.fail", queue="fetch")
        sender.send_task("e2e.stuck", queue="fetch")
    finally:
        signals.before_task_publish.disconnect(dispatch_uid="test.metrics.e2e")
        sender.close()
    depth, age = metrics.queue_depths(redis_client, ["fetch"])["fetch"]
    assert depth == 22 and age is not None

    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "e2e_app", "worker", "--pool", "prefork", "-c", "2",
         "-Q", "fetch", "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "warning"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        wanted = {("ingest_tasks_total", (("state", "success"), ("task", "e2e.count"))): 20,
                  ("ingest_tasks_total", (("state", "failure"), ("task", "e2e.fail"))): 1,
                  ("ingest_tasks_total", (("state", "time_limit"), ("task", "e2e.stuck"))): 1}

        def done() -> bool:
            nonlocal samples
            assert proc.poll() is None, "worker exited early"
            try:
                samples = _samples(_get(f"http://127.0.0.1:{port}/metrics")[1])
            except OSError:
                samples = {}
            return all(samples.get(k) == v for k, v in wanted.items())

        wait_until(done, "the tasks to be counted", details=lambda: {k: samples.get(k) for k in wanted})
        assert samples[("ingest_entries_seen_total", ())] == sum(range(1, 21))
        assert samples[("ingest_task_seconds_count", (("task", "e2e.count"),))] == 20
        assert samples[("ingest_task_seconds_count", (("task", "e2e.fail"),))] == 1
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
