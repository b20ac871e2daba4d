"""Pages whose work is not over, kept beside the broker so that none is lost.

kombu's Redis transport pops a message and only then records it as unacknowledged: a worker killed in that
instant loses the message, and with it the page (its feed entry is already marked seen). So every page a poll
fans out is written here first, with the id its download task will run under, and is struck off when its work
ends (published, duplicate, already published, or dead-lettered). Beat's sweep sends again every page that
has shown no sign of life for a long while, under the same task id, so it re-enters the page's claim; every
step after that is idempotent (a page already handed over is not downloaded again, an article is published
once), so a page sent again by mistake costs work, never a duplicate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import redis

from worker.core.keys import key
from worker.core.messages import PageJob

SWEEP_BATCH = 200  # pages sent again per sweep at most


def _pending() -> str:
    return key("pages", "pending")  # zset: member -> the time after which the page counts as lost


def _jobs() -> str:
    return key("pages", "jobs")  # hash: member -> {"job": PageJob, "task_id": ...}


def member(job: PageJob) -> str:
    """A page as fanned out by its feed (the same article from two feeds is two pages)."""
    return f"{job.feed.id}:{job.article_id}"


def open_pages(r: redis.Redis, jobs: Sequence[PageJob], task_ids: Sequence[str], grace: float,
               delays: Sequence[float] | None = None) -> None:
    """Write the pages down before their messages go out (each after its ``delays`` seconds, if any: a page sent
    at its host's turn is not lost before then). The copy kept here leaves out ``other_titles`` (a cleaning
    hint, the bulk of a job): a page sent again only cleans with a little less help."""
    if not jobs:
        return
    now = time.time()
    pipe = r.pipeline(transaction=False)
    pipe.zadd(_pending(), {member(job): now + grace + (delays[i] if delays else 0.0) for i, job in enumerate(jobs)})
    pipe.hset(_jobs(), mapping={
        member(job): json.dumps({"job": job.model_copy(update={"other_titles": []}).encode(), "task_id": task_id},
                                separators=(",", ":"))
        for job, task_id in zip(jobs, task_ids, strict=True)})
    pipe.execute()


def alive(r: redis.Redis, job: PageJob, seconds: float) -> None:
    """The page is alive and will not be heard of for ``seconds`` (put off for its host): not lost before then
    (``r`` may be a pipeline)."""
    r.zadd(_pending(), {member(job): time.time() + seconds}, xx=True)


def done(r: redis.Redis, job: PageJob) -> None:
    """The page's work is over (``r`` may be a pipeline)."""
    r.zrem(_pending(), member(job))
    r.hdel(_jobs(), member(job))


def overdue(r: redis.Redis, grace: float, limit: int = SWEEP_BATCH, *,
            queued_since: float | None = None) -> list[tuple[PageJob, str]]:
    """The pages past their time, with their task ids, oldest first; each is given ``grace`` more, so a sweep
    sends it again at most once per period.

    ``queued_since``: when the oldest message still waiting in the fetch queue was sent, if any waits. A page
    fanned out after it may be waiting behind a backlog rather than lost, so only pages fanned out before it
    count (a page's time is its fan-out + ``grace`` + its turn's delay, so ``time - grace`` is never before
    its fan-out): a backlog longer than ``grace`` does not get every page in it sent twice."""
    now = time.time()
    if queued_since is not None:
        now = min(now, queued_since + grace)
    members = [m.decode() for m in r.zrangebyscore(_pending(), "-inf", now, start=0, num=limit)]
    if not members:
        return []
    raws = r.hmget(_jobs(), members)
    pipe = r.pipeline(transaction=False)
    out = []
    for m, raw in zip(members, raws, strict=True):
        if raw is None:  # struck off between the two reads, or never fully written
            pipe.zrem(_pending(), m)
            continue
        record = json.loads(raw)
        out.append((PageJob.model_validate(record["job"]), str(record["task_id"])))
        pipe.zadd(_pending(), {m: now + grace}, xx=True)
    pipe.execute()
    return out


def size(r: redis.Redis) -> int:
    """Pages whose work is not over, fleet-wide."""
    return int(r.zcard(_pending()))
