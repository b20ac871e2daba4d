"""The Celery application: broker, queues, reliability options, the beat schedule, and the two kinds of
worker a machine runs (``STAGES``).

``celery -A worker.app worker`` and ``celery -A worker.app beat`` work as with any Celery project; ``ingest``
wraps them.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from typing import Any

from celery import Celery, Task, signals
from kombu import Exchange, Queue

from worker import metrics
from worker.core import logs
from worker.core.redisconn import broker_url
from worker.core.settings import Settings, get_settings
from worker.publish.deadletter import CURRENT_TASK

QUEUES = ("poll", "fetch", "extract", "publish")
SWEEP_EVERY = 30.0  # seconds between beat's sweeps for pages whose message went missing (worker.core.ledger)


@dataclass(frozen=True)
class Stage:
    """One kind of worker: the queues it consumes and the pool that suits their work."""

    name: str
    queues: tuple[str, ...]
    pool: str
    concurrency: int
    prefetch: int  # messages reserved per pool slot

    def celery_args(self, *, node: str | None = None, loglevel: str = "INFO", concurrency: int | None = None,
                    beat: bool = False) -> list[str]:
        """``celery -A worker.app <these>`` starts this stage's worker."""
        args = ["worker", "-Q", ",".join(self.queues), "-P", self.pool, "-c", str(concurrency or self.concurrency),
                "--prefetch-multiplier", str(self.prefetch), "-l", loglevel]
        if node:
            args += ["-n", node]
        if beat:
            args.append("-B")
        return args


def stages(settings: Settings | None = None) -> dict[str, Stage]:
    """The two stages, sized to the machine. Downloads wait on the network and on hosts' turns: a thread pool
    keeps hundreds in flight in one process, one message reserved per thread. Extraction, cleaning and
    publishing are CPU-bound: one process per core, as usual for prefork."""
    s = settings or get_settings()
    return {
        "download": Stage("download", ("poll", "fetch"), "threads", s.download_concurrency, 1),
        "extract": Stage("extract", ("extract", "publish"), "prefork", s.concurrency, 4),
    }

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 120


def short_argsrepr(args: Any) -> str:
    """What dashboards (Flower, ``celery inspect``) show as a task's arguments: a page task by its URL, long
    strings cut. Celery would otherwise ``saferepr`` every message's whole payload (a page with its feed's
    other headlines, an extracted text), ~0.15 ms a message, a third of the cost of sending it."""
    return _SHORT.repr(tuple(
        a.get("final_url") or a.get("url") or a.get("article_id") if isinstance(a, dict) else a for a in args or ()))


class IngestTask(Task):  # type: ignore[misc]
    """Every task of the app: sends a short ``argsrepr`` (see :func:`short_argsrepr`), retries included."""

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        options.setdefault("argsrepr", short_argsrepr(args))
        options.setdefault("kwargsrepr", _SHORT.repr(kwargs or {}))
        return super().apply_async(args, kwargs, **options)


def make_app() -> Celery:
    settings = get_settings()
    # The broker (queues, kombu's bookkeeping, the RedBeat lock) is a plain Redis of its own when
    # INGEST_BROKER_URL says so; every state key, script and stream goes to REDIS_URL (worker.core.redisconn).
    url = broker_url(settings)
    app = Celery("worker", broker=url, include=["worker.tasks"], task_cls=IngestTask)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
        task_default_queue="fetch",
        task_routes={
            "worker.tasks.dispatch": {"queue": "poll"},
            "worker.tasks.poll_feed": {"queue": "poll"},
            "worker.tasks.poll_feeds": {"queue": "poll"},
            "worker.tasks.sweep": {"queue": "poll"},
            "worker.tasks.fetch_article": {"queue": "fetch"},
            "worker.tasks.extract_article": {"queue": "extract"},
            "worker.tasks.publish_article": {"queue": "publish"},
        },
        # At-least-once delivery: a task is acknowledged only when done, and redelivered if its worker dies.
        # Every step is idempotent (claims, the atomic publish script), so redelivery never duplicates.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=4,
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=max(1.0, settings.task_time_limit - 15),
        # Must exceed the longest hold (countdown) plus the time limit, or Redis redelivers live tasks.
        # unacked_restore_throttle 1: a dead worker's unacknowledged tasks go back to the queue within ~10 s of
        # their visibility timeout instead of ~100 s (kombu checks every 10 s, acting on every 10th check).
        broker_transport_options={"visibility_timeout": settings.visibility_timeout, "unacked_restore_throttle": 1},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        # Events cost ~8 Redis publishes per article and nothing of ours reads them; Flower switches them on
        # in the workers when it starts (enable_events), so its task dashboard still works.
        worker_send_task_events=False,
        task_send_sent_event=False,
        beat_schedule={
            "dispatch-due-feeds": {
                "task": "worker.tasks.dispatch",
                "schedule": settings.dispatch_every,
                "options": {"expires": max(1.0, settings.dispatch_every * 2)},
            },
            "sweep-lost-pages": {
                "task": "worker.tasks.sweep",
                "schedule": SWEEP_EVERY,
                "options": {"expires": SWEEP_EVERY},
            },
        },
        # RedBeat keeps the schedule in Redis and holds a lock with expiry: of several beats only one
        # dispatches, and another takes over within the lock timeout when it dies.
        beat_scheduler="redbeat.RedBeatScheduler",
        beat_max_loop_interval=max(1.0, settings.dispatch_every),
        redbeat_redis_url=url,
        redbeat_key_prefix=f"{settings.key_prefix}:redbeat",
        redbeat_lock_timeout=int(max(10, settings.dispatch_every * 6)),
    )
    return app


app = make_app()
metrics.install(app)


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    logs.configure()


@signals.worker_process_init.connect
def _child_logging(**_: Any) -> None:
    logs.configure()


@signals.task_prerun.connect
def _current_task(task_id: str | None = None, **_: Any) -> None:
    CURRENT_TASK.set(task_id)  # every task, so a thread never carries its previous task's id
