"""Counters in Redis: lifetime totals for ``ingest stats``, and per-run bookkeeping for ``ingest run --once``.

A run keeps the set of what is still outstanding: its feeds until their poll ends, then each article each feed
fanned out until that task's pipeline ends (published, duplicate, already published, or dead-lettered). The same
article fanned out by two feeds is two items: the run ends only when both tasks have. Adding and
removing set members is idempotent, so a redelivered task can never miscount; the run is finished when the set
is empty, whatever worker processed what.
"""

from __future__ import annotations

import time

import redis

from worker.core.keys import key
from worker.core.messages import PageJob

RUN_TTL = 7 * 86400


def stats_key() -> str:
    return key("stats")


def run_key(run_id: str) -> str:
    return key("run", run_id)


def count(r: redis.Redis, field: str, amount: int = 1, run_id: str | None = None) -> None:
    """Add to a lifetime total and to the run's. On a pipeline ``r`` the counts are queued with its commands."""
    pipe = r if isinstance(r, redis.client.Pipeline) else r.pipeline(transaction=False)
    pipe.hincrby(stats_key(), field, amount)
    if run_id:
        pipe.hincrby(run_key(run_id), field, amount)
    if pipe is not r:
        pipe.execute()


def totals(r: redis.Redis, run_id: str | None = None) -> dict[str, int]:
    raw = r.hgetall(run_key(run_id) if run_id else stats_key())
    return {k.decode(): int(v) for k, v in sorted(raw.items())}


def _todo(run_id: str) -> str:
    return key("run", run_id, "todo")


def start(r: redis.Redis, run_id: str, feed_ids: list[str]) -> None:
    pipe = r.pipeline(transaction=False)
    pipe.hset(run_key(run_id), mapping={"started": int(time.time())})
    if feed_ids:
        pipe.sadd(_todo(run_id), *(f"feed:{f}" for f in feed_ids))
    pipe.expire(run_key(run_id), RUN_TTL)
    pipe.expire(_todo(run_id), RUN_TTL)
    pipe.execute()


def item(job: PageJob) -> str:
    """A fanned-out page's identity in its run: the article as fanned out by that feed."""
    return f"article:{job.feed.id}:{job.article_id}"


def open_articles(r: redis.Redis, run_id: str | None, jobs: list[PageJob]) -> None:
    if run_id and jobs:
        r.sadd(_todo(run_id), *(item(job) for job in jobs))


def feed_done(r: redis.Redis, run_id: str | None, feed_id: str, outcome: str) -> None:
    """The feed's poll in the run is over, with ``outcome`` (a poll outcome, or ``removed``)."""
    if run_id:
        pipe = r.pipeline(transaction=False)
        pipe.hset(_feeds(run_id), feed_id, outcome)
        pipe.expire(_feeds(run_id), RUN_TTL)
        pipe.srem(_todo(run_id), f"feed:{feed_id}")
        pipe.execute()


def feed_outcomes(r: redis.Redis, run_id: str) -> dict[str, str]:
    """Each feed of the run whose poll is over, with its outcome."""
    return {k.decode(): v.decode() for k, v in r.hgetall(_feeds(run_id)).items()}


def _feeds(run_id: str) -> str:
    return key("run", run_id, "feeds")


def article_done(r: redis.Redis, job: PageJob) -> None:
    """The page's work is over (published, duplicate, already published, or dead-lettered)."""
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
    return key("waiting", stage)


def host_waiting(r: redis.Redis) -> dict[str, int]:
    """Work of each stage put off until its host's turn, now (a gauge kept in Redis: +1 when put off, -1 when
    it runs again). Never below 0: a redelivered task may count itself off twice."""
    values = r.mget([_waiting_key(stage) for stage in STAGES_WAITING])
    return {stage: max(0, int(v or 0)) for stage, v in zip(STAGES_WAITING, values, strict=True)}


def put_off(r: redis.Redis, stage: str, amount: int = 1) -> None:
    """Count work of ``stage`` put off for a busy host (``amount`` -1: it is running again); the lifetime
    total of put-offs (``put_off:<stage>``) goes with it, in one round trip. On a pipeline ``r`` the counts
    are queued with its commands."""
    pipe = r if isinstance(r, redis.client.Pipeline) else r.pipeline(transaction=False)
    pipe.incrby(_waiting_key(stage), amount)
    if amount > 0:
        pipe.hincrby(stats_key(), f"put_off:{stage}", amount)
    if pipe is not r:
        pipe.execute()


def pending(r: redis.Redis, run_id: str) -> int:
    return int(r.scard(_todo(run_id)))
