"""Counters in Redis: lifetime totals for ``ingest stats``, and per-run bookkeeping for ``ingest run --once``.

A run counts its outstanding tasks: +n when it fans out, -1 when a task ends without handing work on. The run is
finished when the count is back to zero, whatever worker processed what.
"""

from __future__ import annotations

import time

import redis

from worker.keys import key

RUN_TTL = 7 * 86400


def stats_key() -> str:
    return key("stats")


def run_key(run_id: str) -> str:
    return key("run", run_id)


def count(r: redis.Redis, field: str, amount: int = 1, run_id: str | None = None) -> None:
    pipe = r.pipeline(transaction=False)
    pipe.hincrby(stats_key(), field, amount)
    if run_id:
        pipe.hincrby(run_key(run_id), field, amount)
    pipe.execute()


def totals(r: redis.Redis, run_id: str | None = None) -> dict[str, int]:
    raw = r.hgetall(run_key(run_id) if run_id else stats_key())
    return {k.decode(): int(v) for k, v in sorted(raw.items())}


def start(r: redis.Redis, run_id: str) -> None:
    r.hset(run_key(run_id), mapping={"started": int(time.time()), "pending": 0})
    r.expire(run_key(run_id), RUN_TTL)


def add_pending(r: redis.Redis, run_id: str | None, n: int) -> None:
    if run_id and n:
        r.hincrby(run_key(run_id), "pending", n)


def pending(r: redis.Redis, run_id: str) -> int:
    return int(r.hget(run_key(run_id), "pending") or 0)
