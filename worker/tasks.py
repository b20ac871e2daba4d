"""Celery tasks: thin wrappers that bind log context, call ``worker.pipeline`` and hand work on."""

from __future__ import annotations

import base64
import random
import time
from typing import Any

import structlog
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from worker import metrics, pipeline
from worker.app import app
from worker.core import runs
from worker.core.redisconn import OneTrip, get_redis
from worker.dedup.claims import Claim, claim, release
from worker.feeds import sync as feedsync
from worker.feeds.feedlist import Feed, FeedList
from worker.poll import websub
from worker.poll.parse import FeedError

log = structlog.get_logger("worker.tasks")

FETCH_RETRIES = 3
MAX_COUNTDOWN = 300  # longer ETAs sit in worker memory and risk redelivery past the visibility timeout
_ctx: pipeline.Context | None = None
_feed_lists: dict[str, FeedList] = {}


def ctx() -> pipeline.Context:
    """One context (Redis pool, HTTP client, scripts) per worker process, built on first use."""
    global _ctx
    if _ctx is None:
        _ctx = pipeline.Context(get_redis())
    return _ctx


def _bind(task: Task, **values: Any) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task.request.id, task=task.name, **values)


@app.task(bind=True, name="worker.tasks.dispatch", ignore_result=True)
def dispatch(self: Task) -> int:
    """Beat's one periodic task: sync the feed list if it changed, then enqueue a poll for every due feed."""
    _bind(self)
    started = time.perf_counter()
    c = ctx()
    feed_list = _feed_lists.setdefault(str(c.settings.feeds), FeedList(c.settings.feeds))
    feedsync.refresh(c.schedule, feed_list)  # a bad entry is skipped and reported, a broken file keeps the last list
    due = c.schedule.claim_due()
    # One message per chunk of feeds: publishing a task costs ~0.5 ms, which at 1 000 due feeds would make the
    # tick 500 ms; a slow feed (at most total_timeout) delays only the others of its chunk.
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
    """The dispatcher's chunk of due feeds, polled one after the other."""
    for feed_id in feed_ids:
        _poll(self, feed_id, None)
    return len(feed_ids)


@app.task(bind=True, name="worker.tasks.poll_feed", ignore_result=True)
def poll_feed(self: Task, feed_id: str, run_id: str | None = None) -> int:
    """One feed, on its own (``ingest run --once``, replays)."""
    _poll(self, feed_id, run_id)
    return 1


def _poll(self: Task, feed_id: str, run_id: str | None) -> None:
    c = ctx()
    feed = c.schedule.feed(feed_id)
    if feed is None:  # removed from the list after dispatch
        runs.feed_done(c.r, run_id, feed_id, "error", error="removed from the feed list")
        return
    _bind(self, feed=feed.label, feed_url=feed.url)
    done: dict[str, Any] | None = {"outcome": "error", "error": "internal"}  # None: polled again later in its run
    try:
        result = pipeline.poll(c, feed, run_id)
        fan_out(c, result.tasks, run_id)
        # while a hub pushes this feed's entries, polling is only the safety net, at the feed's ceiling
        push = websub.enabled(c.settings) and websub.push_active(c.r, feed.id)
        pipeline.commit_poll(c, result, run_id, push=push)
        done = {"outcome": result.outcome, "error": result.error, "new": len(result.tasks)}
        # a one-shot run polls every feed it was given: a poll its busy host put off is sent again
        again = runs.poll_again_in(c.r, run_id, feed_id) if result.outcome == "deferred" else None
        if again is not None:
            poll_feed.apply_async((feed_id, run_id), queue="poll", countdown=again)
            done = None
        _subscribe(c, feed, result)
    except Exception as exc:  # never let one feed's surprise kill the worker or block the others
        log.exception("poll_crashed")
        pipeline.dead_letter(c, stage="poll", reason="internal", url=feed.url, error=repr(exc),
                             payload={"feed_id": feed_id}, run_id=run_id)
        c.schedule.record_failure(feed, reason="internal")
    finally:
        if done is not None:
            runs.feed_done(c.r, run_id, feed_id, **done)


def _subscribe(c: pipeline.Context, feed: Feed, result: pipeline.PollResult) -> None:
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
        payloads, seen_ids = websub.entries_from_delivery(c, feed, base64.b64decode(body_b64), content_type)
        fan_out(c, payloads, None)
        if seen_ids:
            c.seen.add_many(seen_ids)
    except FeedError as exc:
        log.error("push_failed", reason=exc.reason, error=str(exc))
        pipeline.dead_letter(c, stage="push", reason=exc.reason, url=feed.url, error=str(exc),
                             payload={"feed_id": feed_id}, run_id=None)
        return 0
    except Exception as exc:  # never let one delivery's surprise kill the worker
        log.exception("push_crashed")
        pipeline.dead_letter(c, stage="push", reason="internal", url=feed.url, error=repr(exc),
                             payload={"feed_id": feed_id}, run_id=None)
        return 0
    runs.count(c.r, "pushed:deliveries")
    log.info("push_received", new=len(payloads))
    return len(payloads)


def fan_out(c: pipeline.Context, payloads: list[dict[str, Any]], run_id: str | None) -> None:
    """One fetch task per new entry. The caller marks the entries seen only after this returns, so a send that
    fails leaves them to the next poll."""
    runs.open_articles(c.r, run_id, payloads)
    send_all(fetch_article, [(payload,) for payload in payloads], "fetch")


def send_all(task: Task, calls: list[tuple[Any, ...]], queue: str) -> None:
    """Send one message per argument tuple in a single Redis pipeline (kombu's publish batch: 0.19 ms a message
    instead of 0.46). A failed flush raises; whatever it had already pushed is harmless when sent again,
    since every task is idempotent."""
    if not calls:
        return
    with app.producer_or_acquire() as producer, producer.batch():
        for args in calls:
            task.apply_async(args, queue=queue, producer=producer)


@app.task(bind=True, name="worker.tasks.fetch_article", ignore_result=True, max_retries=FETCH_RETRIES)
def fetch_article(self: Task, task: dict[str, Any]) -> None:
    c = ctx()
    _bind(self, feed=task["feed"].get("name") or task["feed"]["url"], url=task["url"], article_id=task["article_id"])
    run_id = task.get("run")
    owner = self.request.id or "?"
    closing = OneTrip(c.r)  # the task's bookkeeping writes, sent in one round trip at its end
    taken = claim(c.r, task["article_id"], int(c.settings.task_time_limit) + 30, owner,
                  published=c.publisher.published)
    if taken is not Claim.TAKEN:
        # HELD: another task (the same article fanned out by another feed) holds it: that one publishes it, or,
        # if its worker dies, its own redelivery does. A redelivery of *this* task re-enters its own claim.
        # PUBLISHED: a redelivery after the article went out, or another feed's copy of it: nothing to fetch.
        log.info("claimed_elsewhere" if taken is Claim.HELD else "already_published")
        pipeline.batch_done(closing, task)  # nothing of this batch left to wait for here
        runs.article_done(closing, run_id, task)
        closing.execute()
        return
    handed_on = False  # True once a held publish step (or a retry) owns the article
    counted = False  # whether this page has been counted off its poll batch
    try:
        prepared = pipeline.fetch_and_extract(c, task, final_attempt=self.request.retries >= self.max_retries)
        if prepared is None:
            pipeline.batch_done(closing, task)  # a page that goes on was counted off with its lines
        counted = True
        if prepared is not None:
            if pipeline.should_hold(c, prepared):
                # Cold start: the publish queue holds it (no worker waits) until the batch has taught the site.
                publish_article.apply_async((prepared,), queue="publish", countdown=1)
                handed_on = True
            else:
                # The usual case publishes here: a second task per article would cost a broker round trip
                # and ~20 % of a worker's time (ops/bench/throughput.py).
                pipeline.publish(c, prepared, bookkeeping=closing)
    except pipeline.RetryLater as exc:
        if not exc.counted:
            # A busy host is no failure: re-send the task with its retry count unchanged (self.retry would use
            # up an attempt), backing off with the number of times it found the host busy, with jitter so the
            # pages of one host do not all come back at once.
            busy = int(task.get("host_busy", 0)) + 1
            countdown = min(MAX_COUNTDOWN, max(exc.countdown or 1.0, min(60.0, 2.0 ** min(busy, 6))))
            countdown *= random.uniform(1.0, 1.5)
            log.info("fetch_deferred", reason=exc.reason, countdown=round(countdown, 1), host_busy=busy,
                     retries=self.request.retries)
            fetch_article.apply_async((task | {"host_busy": busy},), queue="fetch", countdown=countdown,
                                      retries=self.request.retries, task_id=self.request.id)
            handed_on = True
            return
        countdown = exc.countdown or 2 ** (self.request.retries + 1)
        log.warning("fetch_retry", reason=exc.reason, countdown=countdown, attempt=self.request.retries + 1)
        handed_on = True  # the retry is still this run's work
        raise self.retry(countdown=min(countdown, MAX_COUNTDOWN)) from exc
    except SoftTimeLimitExceeded:
        pipeline.dead_letter(c, stage="fetch", reason="time_limit", url=task["url"], error="soft time limit",
                             payload=task, run_id=run_id)
    except Exception as exc:
        log.exception("fetch_crashed")
        pipeline.dead_letter(c, stage="fetch", reason="internal", url=task["url"], error=repr(exc),
                             payload=task, run_id=run_id)
    finally:
        if not counted and not handed_on:
            pipeline.batch_done(closing, task)
        release(closing, task["article_id"], owner)
        if not handed_on:
            runs.article_done(closing, run_id, task)  # after the counts: a finished run has its totals
        closing.execute()


@app.task(bind=True, name="worker.tasks.publish_article", ignore_result=True)
def publish_article(self: Task, prepared: dict[str, Any]) -> None:
    c = ctx()
    _bind(self, feed=prepared["feed"].get("name") or prepared["feed"]["url"], url=prepared["final_url"],
          article_id=prepared["article_id"])
    run_id = prepared.get("run")
    if pipeline.should_hold(c, prepared):
        # Cold start: wait (without occupying a worker) for the rest of the batch to teach the site memory.
        publish_article.apply_async((prepared,), queue="publish", countdown=1)
        return
    try:
        pipeline.publish(c, prepared)
    except Exception as exc:
        log.exception("publish_crashed")
        pipeline.dead_letter(c, stage="publish", reason="internal", url=prepared["final_url"],
                             error=repr(exc), payload=prepared, run_id=run_id)
    finally:
        runs.article_done(c.r, run_id, prepared)

