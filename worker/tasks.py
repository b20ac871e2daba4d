"""Celery tasks: thin wrappers that decode a stage's message, bind log context, call the stage's step and hand
the result to the next stage's queue.

    dispatch ─► poll_feeds ─► poll_feed ──PageJob──► fetch_article ──FetchedPage──► extract_article
                                  (poll queue)          (fetch queue)                  (extract queue)
                                                                                     │ cold start
                                                                                     ▼
                                                            publish_article ◄──PreparedArticle (publish queue)

Polls and downloads run on the I/O worker (a thread pool: hundreds of requests in flight, no CPU-bound
process waiting on the network); extraction, cleaning and publishing on the CPU worker (one process per core).
Task names stay as they were, so messages already queued by an older release still match.
"""

from __future__ import annotations

import base64
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import redis
import structlog
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from pydantic import BaseModel, ValidationError

from worker import metrics
from worker.app import app
from worker.context import Context
from worker.core import ledger, runs
from worker.core.errors import RetryLater
from worker.core.messages import FetchedPage, PageJob, PreparedArticle
from worker.core.redisconn import get_redis, one_trip
from worker.dedup.claims import Claim, claim, release
from worker.download import handoff
from worker.download.step import download, warm_robots
from worker.extract.step import extract
from worker.feeds import sync as feedsync
from worker.feeds.feedlist import Feed, FeedList
from worker.poll import websub
from worker.poll.parse import FeedError
from worker.poll.step import PollResult, commit_poll, poll
from worker.publish.step import publish, should_hold

log = structlog.get_logger("worker.tasks")

FETCH_RETRIES = 3
MAX_COUNTDOWN = 300  # longer ETAs sit in worker memory and risk redelivery past the visibility timeout
TURN_SLACK = 0.01  # seconds: a turn this close is taken at once, without an ETA held by the worker
PAUSED_RECHECK = 15.0  # a poll deferred by a paused host asks again this often (a pause may be lifted early)
M = TypeVar("M", bound=BaseModel)
_ctx: Context | None = None
_ctx_lock = threading.Lock()
_feed_lists: dict[str, FeedList] = {}
_broker_client: redis.Redis | None = None


def _broker() -> redis.Redis:
    """The broker's Redis (the queues' lengths and ages), which may be another one than the state's."""
    global _broker_client
    if _broker_client is None:
        _broker_client = metrics.broker_client(app)
    return _broker_client


def ctx() -> Context:
    """One context (Redis pool, HTTP client, scripts) per worker process, built whole on first use: the
    download worker's threads share it."""
    global _ctx
    if _ctx is None:
        with _ctx_lock:
            if _ctx is None:
                _ctx = Context(get_redis()).warm()
    return _ctx


def _decode(model: type[M], payload: Any, stage: str) -> M | None:
    """The stage's message, or None when it cannot be read (a message of another program, or broken): a
    dead letter with the payload, so nothing vanishes in silence."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        log.error("bad_message", stage=stage, error=str(exc)[:500])
        url = payload.get("url", "") if isinstance(payload, dict) else ""
        ctx().dead_letter(stage=stage, reason="bad_message", url=str(url), error=str(exc)[:2000],
                          payload=payload if isinstance(payload, dict) else {"raw": repr(payload)[:2000]},
                          run_id=None)
        return None


def _bind(task: Task, **values: Any) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task.request.id, task=task.name, **values)


def send_all(task: Task, calls: list[tuple[Any, ...]], queue: str, task_ids: list[str] | None = None,
             countdowns: list[float] | None = None) -> None:
    """Send one message per argument tuple in a single Redis pipeline (kombu's publish batch: 0.19 ms a message
    instead of 0.46), under the given task ids and after the given delays if any. A failed flush raises;
    whatever it had already pushed is harmless when sent again, since every task is idempotent."""
    if not calls:
        return
    with app.producer_or_acquire() as producer, producer.batch():
        for i, args in enumerate(calls):
            countdown = countdowns[i] if countdowns and countdowns[i] > TURN_SLACK else None
            task.apply_async(args, queue=queue, producer=producer, task_id=task_ids[i] if task_ids else None,
                             countdown=countdown)


@app.task(bind=True, name="worker.tasks.sweep", ignore_result=True)
def sweep(self: Task) -> int:
    """Beat's safety net (``worker.core.ledger``): pages whose work has shown no sign of life for a long while
    (a message kombu lost to a worker killed as it was taken) are sent again to the download stage, under the
    task id they had, so they re-enter their claim; a page already handed over is not downloaded again."""
    _bind(self)
    c = ctx()
    waiting, age = metrics.queue_depths(_broker(), ["fetch"], key_prefix=metrics.broker_key_prefix(app))["fetch"]
    lost = ledger.overdue(c.r, _grace(c), queued_since=time.time() - age if waiting and age is not None else None)
    send_all(fetch_article, [(job.encode(),) for job, _ in lost], "fetch", [task_id for _, task_id in lost])
    if lost:
        log.warning("pages_resent", pages=len(lost))
    return len(lost)


# --- poll stage ---------------------------------------------------------------------------------------------


@app.task(bind=True, name="worker.tasks.dispatch", ignore_result=True)
def dispatch(self: Task) -> int:
    """Beat's one periodic task: sync the feed list if it changed, then enqueue the due feeds."""
    _bind(self)
    started = time.perf_counter()
    c = ctx()
    feed_list = _feed_lists.setdefault(str(c.settings.feeds), FeedList(c.settings.feeds))
    feedsync.refresh(c.schedule, feed_list)  # a bad entry is skipped and reported, a broken file keeps the last list
    due = c.schedule.claim_due()
    # One message per chunk of feeds keeps the tick short at 1 000 due feeds; each chunk is split into one
    # poll per feed on the I/O worker, whose threads then poll them side by side.
    size = max(1, c.settings.dispatch_chunk)
    send_all(poll_feeds, [(due[i : i + size],) for i in range(0, len(due), size)], "poll")
    elapsed = time.perf_counter() - started
    metrics.DISPATCH_SECONDS.observe(elapsed)
    metrics.FEEDS_DUE.set(len(due))
    if due:
        log.info("dispatched", feeds=len(due), ms=round(elapsed * 1000, 2))
    return len(due)


@app.task(bind=True, name="worker.tasks.poll_feeds", ignore_result=True)
def poll_feeds(self: Task, feed_ids: list[str]) -> int:
    """The dispatcher's chunk of due feeds: one poll each, so no feed waits on a slow one of its chunk."""
    send_all(poll_feed, [(feed_id,) for feed_id in feed_ids], "poll")
    return len(feed_ids)


@app.task(bind=True, name="worker.tasks.poll_feed", ignore_result=True)
def poll_feed(self: Task, feed_id: str, run_id: str | None = None, host_busy: int = 0,
              reserved_at: float = 0.0) -> int:
    """One feed: poll it, fan out its new entries, commit the poll. A feed whose host is busy comes back at
    the turn the host reserved for it, without holding a thread meanwhile."""
    c = ctx()
    if host_busy:
        runs.put_off(c.r, "poll", -1)
    feed = c.schedule.feed(feed_id)
    if feed is None:  # removed from the list after dispatch
        runs.feed_done(c.r, run_id, feed_id, "error", error="removed from the feed list")
        return 0
    _bind(self, feed=feed.label, feed_url=feed.url)
    done: dict[str, Any] | None = {"outcome": "error", "error": "internal"}  # None: it comes back later
    try:
        result = poll(c, feed, run_id, reserved_at=reserved_at)
        if result.outcome == "deferred":
            # Back at the host's turn, outside a run as in one (a one-shot run polls every feed it was given,
            # so the run waits for it). The schedule's own deferral takes over if this message is ever lost.
            commit_poll(c, result, run_id)
            if run_id is None or runs.deferred(c.r, run_id, feed_id):
                # a turn comes exactly when given; a paused host (no turn) is asked again every so often
                wait = result.retry_in if result.reserved_at else min(result.retry_in, PAUSED_RECHECK)
                poll_feed.apply_async((feed_id, run_id, host_busy + 1, result.reserved_at), queue="poll",
                                      countdown=min(MAX_COUNTDOWN, wait) * random.uniform(1.0, 1.1))
                runs.put_off(c.r, "poll")
            done = None
            return 0
        warm_robots(c, result.jobs)
        fan_out(c, result.jobs, run_id)
        # while a hub pushes this feed's entries, polling is only the safety net, at the feed's ceiling
        push = websub.enabled(c.settings) and websub.push_active(c.r, feed.id)
        commit_poll(c, result, run_id, push=push)
        done = {"outcome": result.outcome, "error": result.error, "new": len(result.jobs)}
        _subscribe(c, feed, result)
    except Exception as exc:  # never let one feed's surprise kill the worker or block the others
        log.exception("poll_crashed")
        c.dead_letter(stage="poll", reason="internal", url=feed.url, error=repr(exc), payload={"feed_id": feed_id},
                      run_id=run_id)
        c.schedule.record_failure(feed, reason="internal")
    finally:
        if done is not None:
            runs.feed_done(c.r, run_id, feed_id, **done)
    return 1


def _subscribe(c: Context, feed: Feed, result: PollResult) -> None:
    """A feed that advertises a WebSub hub gets subscribed (or renewed) after a good poll; a failure there
    only means the feed stays polled, so it must not count as a failed poll."""
    unparsed = result.outcome in ("not_modified", "unchanged")  # no feed document: renew what was advertised
    if result.outcome in ("error", "deferred") or (result.hub is None and not unparsed):
        return
    try:
        websub.maybe_subscribe(c, feed, result.hub, result.self_url, not_modified=unparsed)
    except Exception:
        log.exception("websub_subscribe_crashed")


@app.task(bind=True, name="worker.tasks.receive_push", ignore_result=True)
def receive_push(self: Task, feed_id: str, body_b64: str, content_type: str | None = None) -> int:
    """A signed WebSub delivery (checked by the callback): its new entries go through the same fan-out as a
    poll's and are then marked seen, so an entry pushed and later polled is fetched once."""
    c = ctx()
    feed = c.schedule.feed(feed_id)
    if feed is None:  # removed from the list since the hub sent it
        return 0
    _bind(self, feed=feed.label, feed_url=feed.url, via="websub")
    try:
        jobs, seen_ids = websub.entries_from_delivery(c, feed, base64.b64decode(body_b64), content_type)
        fan_out(c, jobs, None)
        if seen_ids:
            c.seen.add_many(seen_ids)
    except FeedError as exc:
        log.error("push_failed", reason=exc.reason, error=str(exc))
        c.dead_letter(stage="push", reason=exc.reason, url=feed.url, error=str(exc), payload={"feed_id": feed_id},
                      run_id=None)
        return 0
    except Exception as exc:  # never let one delivery's surprise kill the worker
        log.exception("push_crashed")
        c.dead_letter(stage="push", reason="internal", url=feed.url, error=repr(exc), payload={"feed_id": feed_id},
                      run_id=None)
        return 0
    runs.count(c.r, "pushed:deliveries")
    log.info("push_received", new=len(jobs))
    return len(jobs)


def fan_out(c: Context, jobs: list[PageJob], run_id: str | None) -> None:
    """One download task per new entry, each written to the ledger of pages in flight first and sent at the
    turn its host gave it (``Politeness.turns``). The caller marks the entries seen only after this returns, so
    a send that fails leaves them to the next poll."""
    if not jobs:
        return
    turns = c.polite.turns([job.url for job in jobs])
    jobs = [job.model_copy(update={"reserved_at": turn.at}) if turn.at else job
            for job, turn in zip(jobs, turns, strict=True)]
    task_ids = [str(uuid.uuid4()) for _ in jobs]
    waits = [turn.wait for turn in turns]
    ledger.open_pages(c.r, jobs, task_ids, _grace(c), waits)
    runs.open_articles(c.r, run_id, jobs)
    send_all(fetch_article, [(job.encode(),) for job in jobs], "fetch", task_ids, waits)


def _grace(c: Context) -> float:
    """How long a page may show no sign of life before the sweep sends it again: twice the time after which
    Redis gives a dead worker's messages back, so only a message lost outright (not merely slow) is resent."""
    return 2 * c.settings.visibility_timeout


# --- download stage -------------------------------------------------------------------------------------------


@app.task(bind=True, name="worker.tasks.fetch_article", ignore_result=True, max_retries=FETCH_RETRIES)
def fetch_article(self: Task, payload: dict[str, Any]) -> None:
    """Download one page (I/O worker) and hand it to the extract stage."""
    c = ctx()
    job = _decode(PageJob, payload, "fetch")
    if job is None:
        return
    _bind(self, feed=job.feed.label, url=job.url, article_id=job.article_id)
    owner = self.request.id or "?"
    # A page back at its host's turn holds its claim already and was never handed over: it goes straight to
    # its host (a put-off costs a few ms of CPU, and a busy host can put a page off more than once).
    returning = job.host_busy > 0
    stored = None
    if not returning:
        # With the claim, whether this task had handed the page over already (a redelivery).
        taken, described = _claim_reading(
            c, job, owner, lambda trip: trip.hmget(handoff.page_key(job.article_id), *handoff.DESCRIBE_FIELDS))
        if taken is not Claim.TAKEN:
            # HELD: another task (the same article fanned out by another feed) holds it: that one publishes it,
            # or, if its worker dies, its own redelivery does. A redelivery of *this* task re-enters its claim.
            # PUBLISHED: a redelivery after the article went out, or another feed's copy of it: nothing to fetch.
            log.info("claimed_elsewhere" if taken is Claim.HELD else "already_published")
            _finish(c.r, job)
            return
        stored = handoff.described(described)
    handed_on = False
    try:
        page = download(c, job, owner=owner, final_attempt=self.request.retries >= self.max_retries,
                        stored=stored)
        if page is not None:
            extract_article.apply_async((page.encode(),), queue="extract")
            handed_on = True
            if returning:
                runs.put_off(c.r, "fetch", -1)
    except RetryLater as exc:
        handed_on = True  # a retry or a later turn still owns the page (and the run still waits for it)
        if not exc.counted:
            _put_off(self, c, job, exc)
            return
        if returning:
            runs.put_off(c.r, "fetch", -1)
        countdown = exc.countdown or 2 ** (self.request.retries + 1)
        log.warning("fetch_retry", reason=exc.reason, countdown=countdown, attempt=self.request.retries + 1)
        raise self.retry(countdown=min(countdown, MAX_COUNTDOWN)) from exc
    except Exception as exc:
        log.exception("fetch_crashed")
        c.dead_letter(stage="fetch", reason="internal", url=job.url, error=repr(exc), payload=job.encode(),
                      run_id=job.run)
    finally:
        if not handed_on:
            _finish(c.r, job, owner, waited=returning)


def _put_off(self: Task, c: Context, job: PageJob, exc: RetryLater) -> None:
    """A busy host is no failure: the page comes back at the turn the host reserved for it, as the same task
    (its claim) with its retry count unchanged (self.retry would use up an attempt). No thread waits for it:
    the broker holds the message until then."""
    busy = job.host_busy + 1
    countdown = min(MAX_COUNTDOWN, max(exc.countdown or 1.0, 0.01))
    if not exc.reserved_at:  # no turn was given (paused host): back off, spread so the pages do not all return
        countdown = min(MAX_COUNTDOWN, max(countdown, min(60.0, 2.0 ** min(busy, 6))) * random.uniform(1.0, 1.5))
    log.info("fetch_deferred", reason=exc.reason, countdown=round(countdown, 2), host_busy=busy,
             retries=self.request.retries)
    later = job.model_copy(update={"host_busy": busy, "reserved_at": exc.reserved_at})
    fetch_article.apply_async((later.encode(),), queue="fetch", countdown=countdown,
                              retries=self.request.retries, task_id=self.request.id)
    pipe = c.r.pipeline(transaction=False)
    if not job.host_busy:  # a page put off again was counted as waiting already
        runs.put_off(pipe, "fetch")
    else:
        runs.count(pipe, "put_off:fetch")
    ledger.alive(pipe, job, countdown + _grace(c))
    pipe.execute()


def _finish(r: Any, job: PageJob, owner: str | None = None, *, waited: bool = False) -> None:
    """The page's work ends here (skipped or dead-lettered): counted off its batch, its run and, if it had
    been put off for its host, off the pages waiting, in one trip."""
    closing = one_trip(r)
    runs.batch_done(closing, job.batch)
    if owner is not None:
        release(closing, job.article_id, owner)
    if waited:
        runs.put_off(closing, "fetch", -1)
    runs.article_done(closing, job)
    closing.execute()


def _claim_reading(c: Context, job: PageJob, owner: str, read: Callable[[Any], Any]) -> tuple[Claim, Any]:
    """Take (or re-enter) the article's claim and ``read`` the page's hand-off in the same round trip. The claim
    spans both stages: the download task takes it, the extract task holds and releases it with the same owner,
    for as long as a page may wait between them."""
    lease = int(c.settings.page_ttl + c.settings.task_time_limit)
    trip = one_trip(c.r)
    claim(trip, job.article_id, lease, owner, published=c.publisher.published)
    read(trip)
    claimed, answer = trip.execute()
    return Claim(claimed), answer


# --- extract stage --------------------------------------------------------------------------------------------


@app.task(bind=True, name="worker.tasks.extract_article", ignore_result=True)
def extract_article(self: Task, payload: dict[str, Any]) -> None:
    """Extract, clean and publish one downloaded page (CPU worker)."""
    c = ctx()
    page = _decode(FetchedPage, payload, "extract")
    if page is None:
        return
    job = page.job
    _bind(self, feed=job.feed.label, url=page.final_url, article_id=job.article_id)
    taken, raw_page = _claim_reading(c, job, page.owner, lambda trip: trip.hgetall(handoff.page_key(job.article_id)))
    if taken is not Claim.TAKEN:
        # PUBLISHED: a redelivery after the article went out. HELD: our claim lapsed and another feed's copy
        # took the article; that one publishes it (and uses the stored page).
        log.info("claimed_elsewhere" if taken is Claim.HELD else "already_published")
        closing = one_trip(c.r)
        if taken is Claim.PUBLISHED:
            handoff.drop(closing, job.article_id)
        runs.article_done(closing, job)
        closing.execute()
        return
    stored = handoff.unpack(raw_page)
    if stored is None:
        # The page waited longer than page_ttl (a backlog): download it again rather than lose it.
        log.warning("page_expired", ttl=c.settings.page_ttl)
        release(c.r, job.article_id, page.owner)
        fetch_article.apply_async((job.encode(),), queue="fetch")
        return
    closing = one_trip(c.r)  # the task's bookkeeping writes, sent in one round trip at its end
    handed_on = False  # True once a held publish step owns the article
    counted = False  # whether this page has been counted off its poll batch
    try:
        prepared = extract(c, page, stored)
        counted = prepared is not None  # counted off with its lines
        if prepared is not None:
            if should_hold(c, prepared):
                # Cold start: the publish queue holds it (no worker waits) until the batch has taught the site.
                publish_article.apply_async((prepared.encode(),), queue="publish", countdown=1)
                handed_on = True
            else:
                publish(c, prepared, bookkeeping=closing)
    except SoftTimeLimitExceeded:
        c.dead_letter(stage="extract", reason="time_limit", url=page.final_url, error="soft time limit",
                      payload=job.encode(), run_id=job.run)
    except Exception as exc:
        log.exception("extract_crashed")
        c.dead_letter(stage="extract", reason="internal", url=page.final_url, error=repr(exc),
                      payload=job.encode(), run_id=job.run)
    finally:
        if not counted:
            runs.batch_done(closing, job.batch)
        handoff.drop(closing, job.article_id)
        release(closing, job.article_id, page.owner)
        if not handed_on:
            runs.article_done(closing, job)  # after the counts: a finished run has its totals
        closing.execute()


@app.task(bind=True, name="worker.tasks.publish_article", ignore_result=True)
def publish_article(self: Task, payload: dict[str, Any]) -> None:
    """A cold-start page held until its site's batch was observed, then cleaned and published (CPU worker)."""
    c = ctx()
    prepared = _decode(PreparedArticle, payload, "publish")
    if prepared is None:
        return
    _bind(self, feed=prepared.job.feed.label, url=prepared.final_url, article_id=prepared.job.article_id)
    if should_hold(c, prepared):
        # Cold start: wait (without occupying a worker) for the rest of the batch to teach the site memory.
        publish_article.apply_async((prepared.encode(),), queue="publish", countdown=1)
        return
    try:
        publish(c, prepared)
    except Exception as exc:
        log.exception("publish_crashed")
        c.dead_letter(stage="publish", reason="internal", url=prepared.final_url, error=repr(exc),
                      payload=prepared.job.encode(), run_id=prepared.job.run)
    finally:
        runs.article_done(c.r, prepared.job)
