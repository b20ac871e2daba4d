"""Counters in Redis: lifetime totals for ``ingest stats``, and per-run bookkeeping for ``ingest run --once``.

A run keeps the set of what is still outstanding: its feeds until their poll ends, then each article each feed
fanned out until that task's pipeline ends (published, duplicate, already published, or dead-lettered). The same
article fanned out by two feeds is two items: the run ends only when both tasks have. Adding and
removing set members is idempotent, so a redelivered task can never miscount; the run is finished when the set
is empty, whatever worker processed what.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from worker.core.keys import key

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


def item(task: dict[str, Any]) -> str:
    """A fanned-out article task's identity in its run: the article as fanned out by that feed."""
    return f"article:{task['feed']['id']}:{task['article_id']}"


def open_articles(r: redis.Redis, run_id: str | None, tasks: list[dict[str, Any]]) -> None:
    if run_id and tasks:
        r.sadd(_todo(run_id), *(item(t) for t in tasks))


def feed_done(r: redis.Redis, run_id: str | None, feed_id: str) -> None:
    if run_id:
        r.srem(_todo(run_id), f"feed:{feed_id}")


def article_done(r: redis.Redis, run_id: str | None, task: dict[str, Any]) -> None:
    if run_id:
        r.srem(_todo(run_id), item(task))


def pending(r: redis.Redis, run_id: str) -> int:
    return int(r.scard(_todo(run_id)))
