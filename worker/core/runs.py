"""Counters in Redis: lifetime totals for ``ingest stats``, and the bookkeeping of ``ingest run --once``.

A run keeps the set of what is still outstanding: its feeds until each was polled (or failed with a recorded
reason), then each article each feed fanned out until that task's pipeline ends (published, duplicate, already
published, or dead-lettered). A poll put off because the feed's host was busy leaves its feed outstanding and comes
back at its host's turn: a one-shot run polls every feed it was given. The same article fanned out by two
feeds is two items: the run ends only when both tasks have. Adding and removing set members is idempotent, so a
redelivered task can never miscount; the run is finished when the set is empty, whatever worker processed what.
Each feed's outcome is kept beside the set, for the run's summary.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from worker.core import ledger
from worker.core.keys import key, tagged
from worker.core.messages import PageJob
from worker.core.redisconn import is_pipeline

RUN_TTL = 7 * 86400
WAIT_STEP = 0.2  # seconds between looks at a run's progress


def stats_key() -> str:
    return key("stats")


def run_key(run_id: str) -> str:
    return key("run", tagged(run_id))  # a run's keys share a slot: MULTI reads them together


def _todo(run_id: str) -> str:
    return key("run", tagged(run_id), "todo")


def _outcomes(run_id: str) -> str:
    return key("run", tagged(run_id), "feeds")


def _deferrals(run_id: str) -> str:
    return key("run", tagged(run_id), "deferred")


def _meta(run_id: str) -> str:
    return key("run", tagged(run_id), "meta")


def count(r: redis.Redis, field: str, amount: int = 1, run_id: str | None = None) -> None:
    """Add to a lifetime total and to the run's. On a pipeline ``r`` the counts are queued with its commands."""
    pipe = r if is_pipeline(r) else r.pipeline(transaction=False)
    pipe.hincrby(stats_key(), field, amount)
    if run_id:
        pipe.hincrby(run_key(run_id), field, amount)
    if pipe is not r:
        pipe.execute()


def totals(r: redis.Redis, run_id: str | None = None) -> dict[str, int]:
    raw = r.hgetall(run_key(run_id) if run_id else stats_key())
    return {k.decode(): int(v) for k, v in sorted(raw.items())}


def start(r: redis.Redis, run_id: str, feed_ids: list[str]) -> None:
    pipe = r.pipeline(transaction=False)
    pipe.hset(run_key(run_id), mapping={"started": int(time.time())})
    pipe.hset(_meta(run_id), mapping={"feeds": len(feed_ids)})
    if feed_ids:
        pipe.sadd(_todo(run_id), *(f"feed:{f}" for f in feed_ids))
    for name in (run_key(run_id), _todo(run_id), _meta(run_id), _outcomes(run_id), _deferrals(run_id)):
        pipe.expire(name, RUN_TTL)
    pipe.execute()


def item(job: PageJob) -> str:
    """A fanned-out page's identity in its run: the article as fanned out by that feed."""
    return f"article:{job.feed.id}:{job.article_id}"


def open_articles(r: redis.Redis, run_id: str | None, jobs: list[PageJob]) -> None:
    if run_id and jobs:
        pipe = r.pipeline(transaction=False)
        pipe.sadd(_todo(run_id), *(item(job) for job in jobs))
        pipe.hincrby(_meta(run_id), "pages", len(jobs))
        pipe.execute()


def feed_done(r: redis.Redis, run_id: str | None, feed_id: str, outcome: str = "polled", *,
              error: str | None = None, new: int = 0) -> None:
    """The feed's part of the run is over: its ``outcome`` (a poll outcome, or ``error`` with the reason in
    ``error``) is recorded and it stops being outstanding."""
    if not run_id:
        return
    record = {"outcome": outcome, "new": new} | ({"error": error} if error else {})
    pipe = r.pipeline(transaction=True)  # a progress reader sees both changes or neither
    pipe.hset(_outcomes(run_id), feed_id, json.dumps(record))
    pipe.expire(_outcomes(run_id), RUN_TTL)
    pipe.srem(_todo(run_id), f"feed:{feed_id}")
    pipe.execute()


def deferred(r: redis.Redis, run_id: str | None, feed_id: str) -> bool:
    """A run's poll was deferred (its host was busy): count it for the summary. False once the run is over
    (nobody waits for it any more), so its poll is not sent again for the run."""
    if not run_id or r.hget(_meta(run_id), "closed"):
        return False
    pipe = r.pipeline(transaction=False)
    pipe.hincrby(_deferrals(run_id), feed_id, 1)
    pipe.expire(_deferrals(run_id), RUN_TTL)
    pipe.execute()
    return True


def close(r: redis.Redis, run_id: str) -> None:
    """Nobody waits for the run any more: a poll of it deferred after this is not sent again."""
    r.hset(_meta(run_id), "closed", 1)


def article_done(r: redis.Redis, job: PageJob) -> None:
    """The page's work is over (published, duplicate, already published, or dead-lettered): off its run and
    off the ledger of pages in flight (``r`` may be a pipeline)."""
    ledger.done(r, job)
    if job.run:
        r.srem(_todo(job.run), item(job))


def batch_done(r: redis.Redis, batch: str | None) -> None:
    """Count a page off its poll batch (``r`` may be a pipeline): the cold-start hold waits while pages of the
    batch are still on their way."""
    if batch:
        r.decr(key("batch", batch))


def batch_left(r: redis.Redis, batch: str) -> int:
    return int(r.get(key("batch", batch)) or 0)


STAGES_WAITING = ("poll", "fetch")


def _waiting_key(stage: str) -> str:
    return key("waiting", stage, tag="waiting")  # on a cluster, one slot: read with one MGET


def host_waiting(r: redis.Redis) -> dict[str, int]:
    """Work of each stage put off until its host's turn, now (a gauge kept in Redis: +1 when put off, -1 when
    it runs again). Never below 0: a redelivered task may count itself off twice."""
    values = r.mget([_waiting_key(stage) for stage in STAGES_WAITING])
    return {stage: max(0, int(v or 0)) for stage, v in zip(STAGES_WAITING, values, strict=True)}


def put_off(r: redis.Redis, stage: str, amount: int = 1) -> None:
    """Count work of ``stage`` put off for a busy host (``amount`` -1: it is running again); the lifetime
    total of put-offs (``put_off:<stage>``) goes with it, in one round trip. On a pipeline ``r`` the counts
    are queued with its commands."""
    pipe = r if is_pipeline(r) else r.pipeline(transaction=False)
    pipe.incrby(_waiting_key(stage), amount)
    if amount > 0:
        pipe.hincrby(stats_key(), f"put_off:{stage}", amount)
    if pipe is not r:
        pipe.execute()


def pending(r: redis.Redis, run_id: str) -> int:
    return int(r.scard(_todo(run_id)))


@dataclass(frozen=True)
class Progress:
    """How far a run has got."""

    feeds: int  # feeds in the run
    feeds_done: int  # polled, or failed with a reason
    pages: int  # article tasks fanned out so far
    pending: int  # outstanding items: feeds not done and pages not done
    published: int  # messages published (an article routed to two streams counts twice)
    duplicates: int
    dead_letters: int  # feeds and pages
    deferred: int  # polls put off because the host was busy (each one sent again)

    @property
    def pages_pending(self) -> int:
        return max(0, self.pending - (self.feeds - self.feeds_done))

    @property
    def finished(self) -> bool:
        return self.pending <= 0


def progress(r: redis.Redis, run_id: str) -> Progress:
    pipe = r.pipeline(transaction=True)
    pipe.hgetall(_meta(run_id))
    pipe.hlen(_outcomes(run_id))
    pipe.scard(_todo(run_id))
    pipe.hgetall(run_key(run_id))
    meta, done, left, counts = pipe.execute()
    counted = {k.decode(): int(v) for k, v in counts.items()}

    def total(prefix: str) -> int:
        return sum(v for k, v in counted.items() if k.startswith(prefix))

    return Progress(feeds=int(meta.get(b"feeds", 0)), feeds_done=int(done), pages=int(meta.get(b"pages", 0)),
                    pending=int(left), published=total("published:"), duplicates=total("duplicates:"),
                    dead_letters=total("dead_letters:"), deferred=counted.get("polled:deferred", 0))


def wait(r: redis.Redis, run_id: str, *, timeout: float, alive: Callable[[], bool] = lambda: True,
         show: Callable[[Progress], None] = lambda _: None) -> Progress:
    """Wait until the run is finished, ``timeout`` seconds have passed or ``alive`` says the workers are gone;
    ``show`` gets the progress at every look. Returns the last progress."""
    deadline = time.monotonic() + timeout
    while True:
        now = progress(r, run_id)
        show(now)
        if now.finished or time.monotonic() >= deadline or not alive():
            return now
        time.sleep(WAIT_STEP)


@dataclass(frozen=True)
class FeedRef:
    """What a run's summary says about a feed besides its outcome."""

    id: str
    url: str
    name: str | None = None


def feed_outcomes(r: redis.Redis, run_id: str, feeds: Sequence[FeedRef]) -> list[dict[str, Any]]:
    """Each feed's outcome in the run, in the order given; ``pending`` for a feed never polled (the run ended
    first), with the number of times its host was found busy."""
    pipe = r.pipeline(transaction=False)
    pipe.hgetall(_outcomes(run_id))
    pipe.hgetall(_deferrals(run_id))
    raw_outcomes, raw_deferred = pipe.execute()
    outcomes = {k.decode(): json.loads(v) for k, v in raw_outcomes.items()}
    deferred = {k.decode(): int(v) for k, v in raw_deferred.items()}
    rows = []
    for feed in feeds:
        row: dict[str, Any] = {"url": feed.url, "name": feed.name}
        row |= outcomes.get(feed.id, {"outcome": "pending", "new": 0})
        row["deferred"] = deferred.get(feed.id, 0)
        rows.append(row)
    return rows


def summary(r: redis.Redis, run_id: str, feeds: Sequence[FeedRef], seconds: float) -> dict[str, Any]:
    """The JSON summary of ``ingest run --once``: ``finished`` only when every feed was polled (or failed with a
    recorded reason) and every page it fanned out was published, marked duplicate or dead-lettered."""
    now = progress(r, run_id)
    counts = totals(r, run_id)
    counts.pop("pending", None)
    counts.pop("started", None)
    return {
        "run": run_id, "feeds": len(feeds), "finished": now.finished, "seconds": round(seconds, 2),
        "counts": counts,
        "pending": {"feeds": now.feeds - now.feeds_done, "pages": now.pages_pending},
        "feed_outcomes": feed_outcomes(r, run_id, feeds),
    }
