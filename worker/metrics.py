"""Prometheus metrics, correct under Celery's prefork pool.

Every pool child is its own process, so an in-memory registry would show one random child's figures to
each scrape. prometheus_client's multiprocess mode keeps each process's values in mmap'd files under
``PROMETHEUS_MULTIPROC_DIR``; the worker's main process serves the sum over all of them, next to a collector
that reads queue depth and the age of the oldest message straight from the broker Redis.

Wiring (done by :func:`install`, which ``worker/app.py`` calls once at import, in every process):

* ``before_task_publish`` stamps every message with an ``enqueued_at`` header (beat, workers, CLI alike);
* ``task_prerun``/``task_postrun`` time and count each task (``ingest_task_seconds``, ``ingest_tasks_total``);
* ``task_failure`` in the main process counts hard time-limit kills, which never reach the child's postrun;
* ``worker_init`` (main process, before the pool forks) drops files of processes that no longer exist;
* ``worker_process_shutdown`` marks a pool child dead so its live gauges stop counting;
* ``worker_ready`` (main process) starts the HTTP server on ``metrics_port`` (0 disables it).

One worker (main process and its pool) per ``PROMETHEUS_MULTIPROC_DIR``: two workers sharing a directory
would each serve the other's counts too. Unset, the directory is a fresh temporary one per process tree.
"""

from __future__ import annotations

# --- multiprocess directory: must exist in the environment before prometheus_client creates a value ------
# prometheus_client picks its value class (in-memory or mmap'd file) when ``prometheus_client.values`` is
# imported, and module-level metrics below create their values as soon as they are constructed; so the
# directory is settled here, above the prometheus_client import, in the process that will later fork.
import atexit
import os
import shutil
import tempfile

_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_OWNED_DIR: str | None = None  # set when this module created the directory, so it also removes it


def _ensure_multiproc_dir() -> str:
    """The multiprocess directory: the user's ``PROMETHEUS_MULTIPROC_DIR``, else a fresh temporary one."""
    global _OWNED_DIR
    path = os.environ.get(_MULTIPROC_ENV) or os.environ.get(_MULTIPROC_ENV.lower())
    if path:
        os.makedirs(path, exist_ok=True)
        os.environ[_MULTIPROC_ENV] = path
        return path
    path = tempfile.mkdtemp(prefix="ingest-prometheus-")
    # Exported so pool children (forked) and any sub-process write into the same directory.
    os.environ[_MULTIPROC_ENV] = path
    _OWNED_DIR = path
    owner = os.getpid()

    def _cleanup() -> None:
        # Forked children inherit atexit handlers; only the creating process may delete the directory.
        if os.getpid() == owner:
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(_cleanup)
    return path


MULTIPROC_DIR = _ensure_multiproc_dir()

import contextlib  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterable, Iterator, Sequence  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server  # noqa: E402

import redis  # noqa: E402
from prometheus_client import (  # noqa: E402
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    make_wsgi_app,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric  # noqa: E402
from prometheus_client.exposition import ThreadingWSGIServer  # noqa: E402
from prometheus_client.registry import Collector  # noqa: E402
from redis.backoff import NoBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from celery import Celery

# If something imported prometheus_client before this module set the directory, it chose the in-memory
# value class; switch it so every metric created from here on is file-backed and visible to the parent.
if not values.ValueClass.__name__.startswith("Mmaped"):
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]

DEFAULT_QUEUES: tuple[str, ...] = ("poll", "fetch", "extract", "publish")
# kombu's Redis transport keeps one list per priority step: "fetch", "fetch\x06\x163", "fetch\x06\x166", ...
KOMBU_PRIORITY_SEP = "\x06\x16"
KOMBU_PRIORITY_STEPS: tuple[int, ...] = (0, 3, 6, 9)
ENQUEUED_AT_HEADER = "enqueued_at"

# --- pipeline metrics (incremented by worker/tasks.py and friends) ------------------------------------------

FEEDS_POLLED = Counter(
    "ingest_feeds_polled", "Feed polls by outcome (new_entries, no_new_entries, not_modified, deferred, error).",
    ["outcome"],
)
ENTRIES_SEEN = Counter("ingest_entries_seen", "Feed entries read from polled feeds.")
ENTRIES_NEW = Counter("ingest_entries_new", "Feed entries not seen before, queued for fetching.")
PAGES_FETCHED = Counter(
    "ingest_pages_fetched", "Article pages fetched, by status (ok or an error reason slug).", ["status"]
)
FETCH_SECONDS = Histogram(
    "ingest_fetch_seconds", "Time to download one feed or article page.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0),
)
DOWNLOADS_IN_FLIGHT = Gauge(
    "ingest_downloads_in_flight", "HTTP requests in flight now (inside a host slot), by kind (feed, page, robots).",
    ["kind"], multiprocess_mode="livesum",
)
HANDOFF_BYTES = Histogram(
    "ingest_handoff_bytes", "Compressed bytes of a page left in Redis by the download stage for the extract stage.",
    buckets=(1e3, 5e3, 1e4, 2.5e4, 5e4, 1e5, 2.5e5, 5e5, 1e6, 5e6),
)
EXTRACT_SECONDS = Histogram(
    "ingest_extract_seconds", "Time to extract one article page and teach its lines to the site memory.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0),
)
LINES_REMOVED = Counter(
    "ingest_lines_removed", "Boilerplate lines removed from articles, by reason.", ["reason"]
)
DUPLICATES = Counter("ingest_duplicates", "Articles recognised as duplicates, by reason.", ["reason"])
ARTICLES_PUBLISHED = Counter("ingest_articles_published", "Articles published, by stream.", ["stream"])
DEAD_LETTERS = Counter(
    "ingest_dead_letters", "Items written to the dead-letter stream, by reason.", ["reason"]
)
HOST_WAIT_SECONDS = Histogram(
    "ingest_host_wait_seconds", "Time waited for a host's politeness slot before a request, by kind.", ["kind"],
    buckets=(0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0),
)
HOST_BUSY = Counter(
    "ingest_host_busy", "Requests put off because their host stayed at its politeness limit or paused "
    "(feeds deferred, pages retried later), by kind.", ["kind"],
)
HOST_PAUSES = Counter(
    "ingest_host_pauses", "Hosts paused whole by a Retry-After with host scope, by kind of request.", ["kind"]
)
ROBOTS_DECISIONS = Counter(
    "ingest_robots_decisions", "robots.txt checks of article pages, by decision (allowed, disallowed, "
    "unavailable, skipped).", ["decision"],
)
ROBOTS_FETCHES = Counter(
    "ingest_robots_fetches", "robots.txt downloads, by result (rules, allow_all, unavailable).", ["result"]
)
WEBSUB_DELIVERIES = Counter(
    "ingest_websub_deliveries",
    "WebSub deliveries received by the callback, by outcome (accepted, bad_signature, no_signature, "
    "unknown_feed, too_large, not_configured, enqueue_failed).",
    ["outcome"],
)
WEBSUB_SUBSCRIPTIONS = Counter(
    "ingest_websub_subscriptions",
    "WebSub subscription steps by outcome (requested, hub_refused, hub_error, verified, unsubscribed, "
    "denied, verification_refused).",
    ["outcome"],
)
DISPATCH_SECONDS = Histogram(
    "ingest_dispatch_seconds", "Time of one beat dispatch tick.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
# The dispatch tick runs in whichever pool child picks it up; the latest value among live processes is the
# current figure (summing the children's last values would add up stale ticks).
FEEDS_DUE = Gauge(
    "ingest_feeds_due", "Feeds due for polling at the last dispatch tick.", multiprocess_mode="livemostrecent"
)

# --- task metrics (from Celery signals) ------------------------------------------------------------------

TASK_SECONDS = Histogram(
    "ingest_task_seconds", "Run time of one task, by task name.", ["task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)
TASKS_IN_PROGRESS = Gauge(
    "ingest_tasks_in_progress", "Tasks running now, by task name: each stage's work in flight.", ["task"],
    multiprocess_mode="livesum",
)
TASKS = Counter("ingest_tasks", "Finished tasks by task name and final state (lower-case Celery state).",
                ["task", "state"])

# Names of the collector's metrics; they are served by the worker's main process only.
QUEUE_DEPTH_METRIC = "ingest_queue_depth"
QUEUE_AGE_METRIC = "ingest_queue_oldest_age_seconds"
HOST_WAITING_METRIC = "ingest_host_waiting"
FEEDS_METRIC = "ingest_feeds"
FEEDS_FAILING_METRIC = "ingest_feeds_failing"
FEEDS_INVALID_METRIC = "ingest_feeds_invalid"
FEED_ERRORS_METRIC = "ingest_feed_consecutive_errors"
FEED_ERRORS_SHOWN = 20  # per-feed series only for the worst few: 10 000 feeds must not mean 10 000 series


def exported_metric_names() -> set[str]:
    """Every metric name a scrape of the worker can show, as written in PromQL (counters with ``_total``).

    Histograms are listed by their base name; ``_bucket``/``_sum``/``_count`` are implied.
    """
    names = {QUEUE_DEPTH_METRIC, QUEUE_AGE_METRIC, HOST_WAITING_METRIC, FEEDS_METRIC, FEEDS_FAILING_METRIC,
             FEEDS_INVALID_METRIC,
             FEED_ERRORS_METRIC}
    for metric in REGISTRY.collect():
        if not metric.name.startswith("ingest_"):
            continue
        names.add(metric.name + "_total" if metric.type == "counter" else metric.name)
    return names


# --- queue depth and age -------------------------------------------------------------------------------

def _priority_keys(queue: str, key_prefix: str = "") -> list[str]:
    return [
        f"{key_prefix}{queue}" if step == 0 else f"{key_prefix}{queue}{KOMBU_PRIORITY_SEP}{step}"
        for step in KOMBU_PRIORITY_STEPS
    ]


def _enqueued_at(raw: bytes | str | None) -> float | None:
    """The ``enqueued_at`` header of a kombu Redis message (JSON with ``headers``), or None."""
    if raw is None:
        return None
    try:
        message = json.loads(raw)
        value = message["headers"][ENQUEUED_AT_HEADER]
        return float(value)
    except (ValueError, TypeError, KeyError):
        return None  # a message from a publisher without the signal, or not a kombu message


def queue_depths(
    client: redis.Redis,
    queues: Iterable[str] = DEFAULT_QUEUES,
    *,
    key_prefix: str = "",
    now: float | None = None,
) -> dict[str, tuple[int, float | None]]:
    """``{queue: (messages waiting, age in seconds of the oldest one or None)}`` read from the broker.

    kombu LPUSHes and BRPOPs, so the oldest message of each priority list is at index -1; the age is
    that of the oldest across a queue's priority lists. Unacknowledged (reserved) messages are not counted.
    """
    queues = list(queues)
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for key in _priority_keys(queue, key_prefix):
            pipe.llen(key)
            pipe.lindex(key, -1)
    replies: list[Any] = pipe.execute()
    now = time.time() if now is None else now
    result: dict[str, tuple[int, float | None]] = {}
    per_queue = 2 * len(KOMBU_PRIORITY_STEPS)
    for i, queue in enumerate(queues):
        chunk = replies[i * per_queue:(i + 1) * per_queue]
        depth = sum(int(n) for n in chunk[0::2])
        stamps = [s for s in (_enqueued_at(raw) for raw in chunk[1::2]) if s is not None]
        age = max(0.0, now - min(stamps)) if stamps else None
        result[queue] = (depth, age)
    return result


class QueueCollector(Collector):
    """Custom collector read from Redis at scrape time: ``ingest_queue_depth`` and
    ``ingest_queue_oldest_age_seconds`` per queue, and the feeds' error state (``ingest_feeds``,
    ``ingest_feeds_failing``, ``ingest_feeds_invalid``, ``ingest_feed_consecutive_errors`` for the worst
    failing feeds)."""

    def __init__(
        self, client: redis.Redis, queues: Sequence[str] = DEFAULT_QUEUES, key_prefix: str = "",
        state: redis.Redis | None = None,
    ) -> None:
        self.client = client  # the broker: queue lengths
        self.state = state if state is not None else client  # the state store: feeds, work put off
        self.queues = tuple(queues)
        self.key_prefix = key_prefix

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            QUEUE_DEPTH_METRIC, "Messages waiting in the broker queue.", labels=["queue"]
        )
        age = GaugeMetricFamily(
            QUEUE_AGE_METRIC, "Age of the oldest message waiting in the broker queue (0 when empty).",
            labels=["queue"],
        )
        try:
            figures = queue_depths(self.client, self.queues, key_prefix=self.key_prefix)
        except redis.RedisError:
            # An unreachable broker must not fail the whole scrape; the missing series are the signal
            # (and /readyz reports it).
            return
        for queue, (n, oldest) in figures.items():
            depth.add_metric([queue], n)
            # An empty queue has no age; 0 keeps the series continuous for alerting on "> threshold".
            age.add_metric([queue], oldest if oldest is not None else 0.0)
        yield depth
        yield age
        try:
            yield self._waiting()
            yield from self._feeds()
        except redis.RedisError:
            return

    def _waiting(self) -> Metric:
        from worker.core import runs

        waiting = GaugeMetricFamily(
            HOST_WAITING_METRIC, "Work put off until its host's turn (pages re-queued, one-shot feed polls), by "
            "stage: it holds no worker while it waits.", labels=["stage"])
        for stage, n in runs.host_waiting(self.state).items():
            waiting.add_metric([stage], n)
        return waiting

    def _feeds(self) -> Iterator[Metric]:
        from worker.feeds.feedlist import Feed
        from worker.poll.schedule import Schedule, config_key, invalid_key

        schedule = Schedule(self.state)
        failing = schedule.failing(FEED_ERRORS_SHOWN)
        yield GaugeMetricFamily(FEEDS_METRIC, "Feeds in the feed list.", value=self.state.hlen(config_key()))
        yield GaugeMetricFamily(FEEDS_FAILING_METRIC, "Feeds whose last poll failed (still retried with backoff).",
                                value=schedule.count_failing())
        yield GaugeMetricFamily(FEEDS_INVALID_METRIC, "Entries of the feed list skipped as invalid at its last "
                                "reading (a file that cannot be read at all counts as one).",
                                value=self.state.llen(invalid_key()))
        errors = GaugeMetricFamily(FEED_ERRORS_METRIC, "Consecutive poll errors of the worst failing feeds.",
                                   labels=["feed_id", "feed"])
        configs = self.state.hmget(config_key(), [fid for fid, _ in failing]) if failing else []
        for (feed_id, n), raw in zip(failing, configs, strict=True):
            errors.add_metric([feed_id, Feed.model_validate_json(raw).label if raw else feed_id], n)
        yield errors


# --- multiprocess bookkeeping ----------------------------------------------------------------------------

_PID_IN_FILE = re.compile(r"_(\d+)\.db$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def sweep_dead_processes(path: str | None = None, *, drop_all_files: bool = False) -> int:
    """Forget live gauges of processes that are gone (a child killed by a hard time limit never says so).

    With ``drop_all_files`` (worker start), every file of a dead process goes, counters included: they are
    left over from an earlier run in the same directory, and the new run starts its counters from zero.
    Returns how many dead processes were found.
    """
    path = path or os.environ.get(_MULTIPROC_ENV) or MULTIPROC_DIR
    dead: set[int] = set()
    for file in glob.glob(os.path.join(path, "*.db")):
        match = _PID_IN_FILE.search(file)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _pid_alive(pid):
            continue
        dead.add(pid)
        if drop_all_files:
            with contextlib.suppress(FileNotFoundError):
                os.remove(file)
    for pid in dead:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
    return len(dead)


def build_registry(collector: Collector | None = None, path: str | None = None) -> CollectorRegistry:
    """A registry summing all processes' files, plus ``collector`` (e.g. a :class:`QueueCollector`)."""
    registry = CollectorRegistry()
    directory = path or os.environ.get(_MULTIPROC_ENV) or MULTIPROC_DIR
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    if collector is not None:
        registry.register(collector)
    return registry


# --- HTTP server: /metrics, /healthz, /readyz ------------------------------------------------------------

class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape or probe."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def make_app(registry: CollectorRegistry, ready: Callable[[], bool] | None = None) -> WSGIApplication:
    """WSGI app: ``/healthz`` (process answers), ``/readyz`` (``ready()`` is true), anything else metrics."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/readyz":
            ok = True
            if ready is not None:
                try:
                    ok = ready()
                except Exception:  # any failure of the check means "not ready", never a 500 loop
                    ok = False
            status = "200 OK" if ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain")])
            return [b"ready\n" if ok else b"not ready\n"]
        if path == "/metrics":
            # Between scrapes a child may have died without its shutdown signal (SIGKILL on a hard limit).
            sweep_dead_processes()
        return metrics_app(environ, start_response)  # type: ignore[no-any-return]

    return app


def _redis_ready(*clients: redis.Redis) -> Callable[[], bool]:
    def ready() -> bool:
        return all(bool(client.ping()) for client in clients)

    return ready


def start_http_server(
    port: int,
    addr: str = "0.0.0.0",
    *,
    redis_client: redis.Redis | None = None,
    queues: Sequence[str] = DEFAULT_QUEUES,
    key_prefix: str = "",
    state_client: redis.Redis | None = None,
) -> WSGIServer:
    """Serve the multiprocess-aggregated metrics (+ queue collector), /healthz and /readyz in a daemon thread.

    ``redis_client`` is the broker; without it there is no queue collector and /readyz only says "alive".
    ``state_client``: the state store (feeds, work put off), when it is not the broker's Redis.
    Returns the server: ``server.shutdown(); server.server_close()`` stops it; ``server.server_port`` is the
    bound port (useful with ``port=0``).
    """
    collector = QueueCollector(redis_client, queues, key_prefix, state_client) if redis_client is not None else None
    registry = build_registry(collector)
    clients = [c for c in (redis_client, state_client) if c is not None]
    app = make_app(registry, _redis_ready(*clients) if clients else None)
    server = make_server(addr, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return server


# --- Celery wiring ---------------------------------------------------------------------------------------

# task id -> (task name, perf_counter at prerun); per process, as each child runs its own tasks
_task_started: dict[str, tuple[str, float]] = {}
_server: WSGIServer | None = None
_installed = False


def broker_key_prefix(app: Celery) -> str:
    """kombu's ``global_keyprefix`` on the broker: the queues' lists are named with it."""
    return str((app.conf.broker_transport_options or {}).get("global_keyprefix", ""))


def broker_client(app: Celery) -> redis.Redis:
    """A client of the broker Redis with short timeouts, so a scrape never hangs on a sick broker."""
    url = app.conf.broker_url
    if not url or not str(url).startswith(("redis://", "rediss://", "unix://")):
        from worker.core.redisconn import redis_url

        url = redis_url()
    # No retries with backoff either: a probe or scrape is repeated by its caller anyway.
    return redis.Redis.from_url(
        str(url).split(";")[0], socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
    )


def _state_client() -> redis.Redis | None:
    """A client of the state store with short timeouts, like the broker's; None when it is the broker's Redis."""
    from worker.core.redisconn import redis_url, state_client
    from worker.core.settings import get_settings

    settings = get_settings()
    if settings.broker_url is None:
        return None
    return state_client(redis_url(settings), cluster=settings.redis_cluster, socket_timeout=2,  # type: ignore[no-any-return]
                        socket_connect_timeout=2)


def _queue_names(app: Celery) -> tuple[str, ...]:
    configured = app.conf.task_queues
    if configured:
        return tuple(str(q.name) for q in configured)
    return DEFAULT_QUEUES


def on_before_task_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Stamp every message with its publish time; overwritten on retry, so age counts from the re-queue."""
    if headers is not None:
        headers[ENQUEUED_AT_HEADER] = time.time()


def on_task_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id is not None:
        name = getattr(task, "name", "unknown")
        _task_started[task_id] = (name, time.perf_counter())
        TASKS_IN_PROGRESS.labels(name).inc()


def on_task_postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    started = _task_started.pop(task_id, None) if task_id is not None else None
    name = getattr(task, "name", None) or (started[0] if started else "unknown")
    if started is not None:
        TASK_SECONDS.labels(name).observe(time.perf_counter() - started[1])
        TASKS_IN_PROGRESS.labels(started[0]).dec()
    TASKS.labels(name, (state or "unknown").lower()).inc()


# Task id -> when its hard time-limit kill was counted. Celery 5.7 sends task_failure twice for one kill (from
# the timeout handler, then again when the pool reports the dead job); a rerun of the same task can only be
# killed again after running its whole time limit, far longer than the gap between the two signals.
_time_limited: dict[str, float] = {}
_TIME_LIMIT_REPEAT = 1.0


def on_task_failure(sender: Any = None, task_id: str | None = None, exception: BaseException | None = None,
                    **_: Any) -> None:
    """Count hard time-limit kills: the parent sends this signal and the killed child never runs postrun.

    Ordinary failures are counted by postrun (state ``failure``) in the child, so they are skipped here.
    """
    from billiard.exceptions import TimeLimitExceeded

    if not isinstance(exception, TimeLimitExceeded):
        return
    now = time.monotonic()
    if task_id is not None:
        if now - _time_limited.get(task_id, -_TIME_LIMIT_REPEAT) < _TIME_LIMIT_REPEAT:
            return
        if len(_time_limited) > 1000:
            _time_limited.clear()
        _time_limited[task_id] = now
    TASKS.labels(getattr(sender, "name", "unknown"), "time_limit").inc()


def on_worker_init(**_: Any) -> None:
    """Main process, before the pool forks: clear files a previous run left in a reused directory."""
    sweep_dead_processes(drop_all_files=True)


def on_worker_process_init(**_: Any) -> None:
    """A new pool child: forget task start times copied from the parent by fork.

    prometheus_client notices the new pid by itself and opens this child's own files on first use.
    """
    _task_started.clear()


def on_worker_process_shutdown(pid: int | None = None, **_: Any) -> None:
    """A pool child exits: its live gauges (``ingest_feeds_due``) must stop counting."""
    multiprocess.mark_process_dead(pid if pid is not None else os.getpid())  # type: ignore[no-untyped-call]


def _make_on_worker_ready(app: Celery, port: int | None) -> Callable[..., None]:
    def on_worker_ready(**_: Any) -> None:
        # Started after the pool's first fork, so the children don't start life with a serving thread's state.
        global _server
        from worker.core.settings import get_settings

        chosen = get_settings().metrics_port if port is None else port
        if chosen <= 0 or _server is not None:
            return
        prefix = broker_key_prefix(app)
        try:
            _server = start_http_server(
                chosen, redis_client=broker_client(app), queues=_queue_names(app), key_prefix=prefix,
                state_client=_state_client(),
            )
        except OSError as exc:
            # A busy port must not take the worker down with it; the work matters more than its metrics.
            from worker.core.logs import get_logger

            get_logger(__name__).warning("metrics_server_not_started", port=chosen, error=str(exc))

    return on_worker_ready


def install(app: Celery, *, port: int | None = None) -> None:
    """Connect the metrics signals; call once per process, right after creating the Celery app.

    ``port`` overrides the ``metrics_port`` setting (0 disables the HTTP server). Idempotent.
    """
    global _installed
    if _installed:
        return
    from celery import signals

    signals.before_task_publish.connect(
        on_before_task_publish, weak=False, dispatch_uid="ingest.metrics.publish"
    )
    signals.task_prerun.connect(on_task_prerun, weak=False, dispatch_uid="ingest.metrics.prerun")
    signals.task_postrun.connect(on_task_postrun, weak=False, dispatch_uid="ingest.metrics.postrun")
    signals.task_failure.connect(on_task_failure, weak=False, dispatch_uid="ingest.metrics.failure")
    signals.worker_init.connect(on_worker_init, weak=False, dispatch_uid="ingest.metrics.worker_init")
    signals.worker_process_init.connect(
        on_worker_process_init, weak=False, dispatch_uid="ingest.metrics.process_init"
    )
    signals.worker_process_shutdown.connect(
        on_worker_process_shutdown, weak=False, dispatch_uid="ingest.metrics.process_shutdown"
    )
    signals.worker_ready.connect(
        _make_on_worker_ready(app, port), weak=False, dispatch_uid="ingest.metrics.worker_ready"
    )
    _installed = True


def stop_http_server() -> None:
    """Stop the server :func:`install` started (tests, embedded runs)."""
    global _server
    if _server is not None:
        _server.shutdown()
        _server.server_close()
        _server = None
