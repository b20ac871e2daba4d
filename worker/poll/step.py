"""The poll stage's steps: download and parse one feed (conditional GET inside a host slot), turn the entries not
seen before into ``PageJob`` messages, and, once they are safely enqueued, commit the poll (seen-set,
validators, next due time, counts)."""

from __future__ import annotations

import dataclasses
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import structlog

from worker import metrics
from worker.core import runs
from worker.core.keys import digest, key
from worker.core.messages import FeedInfo, PageJob
from worker.core.urls import InvalidURL, article_id, canonicalize
from worker.feeds.feedlist import Feed
from worker.net.fetch import FetchError
from worker.net.politeness import HostBusy, retry_after_scope
from worker.poll.parse import FeedError, ParsedFeed, parse_feed
from worker.poll.schedule import Answer, FeedState

if TYPE_CHECKING:
    from worker.context import Context

log = structlog.get_logger("worker.poll.step")

MAX_OTHER_TITLES = 100
DEFER_MARGIN = 120.0  # a deferred feed is due again this long after its turn, in case its re-sent poll is lost
Outcome = Literal["new_entries", "no_new_entries", "not_modified", "unchanged", "deferred", "error"]


@dataclass
class PollResult:
    feed: Feed
    # deferred: the feed's host was at its politeness limit; it is polled again soon, nothing is recorded
    outcome: Outcome
    jobs: list[PageJob] = field(default_factory=list)
    seen_ids: list[str] = field(default_factory=list)
    error: str | None = None
    # what to record in the schedule once the jobs are safely enqueued, and the state the poll started from
    answer: Answer | None = None
    state: FeedState | None = None
    # WebSub discovery: the advertised hub and the feed's own URL (Link header first, then the feed's links)
    hub: str | None = None
    self_url: str | None = None
    retry_in: float = 0.0  # deferred: seconds until the host's turn for this feed...
    reserved_at: float = 0.0  # ...and that turn, to present when it comes back


def feed_info(feed: Feed) -> FeedInfo:
    """What a page's message carries about its feed."""
    return FeedInfo(id=feed.id, url=feed.url, name=feed.name, tags=list(feed.tags), route=feed.route,
                    language=feed.language, robots=feed.robots, retry_after_scope=feed.retry_after_scope)


def poll(ctx: Context, feed: Feed, run_id: str | None = None, *, reserved_at: float = 0.0) -> PollResult:
    """Fetch and parse one feed; return one job per entry not seen before. Nothing is marked seen and the
    validators are not stored until ``commit_poll`` runs after the fan-out, so a crash in between re-polls
    (publishing is idempotent) instead of losing entries."""
    state = ctx.schedule.state(feed.id)
    try:
        resp = ctx.polite_fetch(feed.url, "feed", etag=state.etag, last_modified=state.last_modified,
                                reserved_at=reserved_at)
    except HostBusy as exc:
        # Not the feed's fault: no error counted, validators untouched. The caller brings the poll back at the
        # host's turn; the schedule only takes over if that never happens.
        ctx.schedule.defer(feed.id, exc.wait + DEFER_MARGIN)
        log.info("feed_deferred", feed=feed.label, host=exc.host, retry_in=round(exc.wait, 1))
        return PollResult(feed, "deferred", retry_in=exc.wait, reserved_at=exc.reserved_at)
    except FetchError as exc:
        ctx.polite.honour_retry_after(feed.url, status=exc.status, retry_after=exc.retry_after,
                                      scope=retry_after_scope(ctx.settings, feed.retry_after_scope), kind="feed")
        return _poll_failed(ctx, feed, exc.reason, str(exc), exc.retry_after, run_id)
    if resp.not_modified:
        return PollResult(feed, "not_modified", state=state,
                          answer=Answer(304, retry_after=resp.retry_after, fresh_for=resp.fresh_for),
                          hub=resp.links.get("hub"), self_url=resp.links.get("self"))
    body_hash = hashlib.blake2b(resp.body, digest_size=16).hexdigest()
    answer = Answer(200, etag=resp.etag, last_modified=resp.last_modified, body_hash=body_hash,
                    retry_after=resp.retry_after, fresh_for=resp.fresh_for)
    if answer.body_hash == state.body_hash:
        # A server without validators (or with new ones for the same bytes): nothing to parse.
        return PollResult(feed, "unchanged", answer=answer, state=state)
    try:
        # the charset parameter matters: a feed served as windows-1251 without an XML declaration says so only here
        content_type = f"{resp.content_type}; charset={resp.charset}" if resp.charset else resp.content_type
        parsed = parse_feed(resp.body, url=resp.url, content_type=content_type)
    except FeedError as exc:
        return _poll_failed(ctx, feed, exc.reason, str(exc), None, run_id)
    jobs, seen_ids = new_entries(ctx, feed, parsed, run_id)
    answer = dataclasses.replace(
        answer, parsed=True, ttl=parsed.ttl_seconds, skip_hours=parsed.skip_hours, skip_days=parsed.skip_days,
        published=tuple(_epoch(job.published) for job in jobs))
    return PollResult(feed, "new_entries" if jobs else "no_new_entries", jobs=jobs, seen_ids=seen_ids,
                      answer=answer, state=state, hub=resp.links.get("hub") or parsed.hub,
                      self_url=resp.links.get("self") or parsed.self_url)


def _epoch(iso: str | None) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp() if iso else None
    except ValueError:
        return None


def new_entries(ctx: Context, feed: Feed, parsed: ParsedFeed,
                run_id: str | None = None) -> tuple[list[PageJob], list[str]]:
    """The jobs of a parsed feed's entries not seen before, and the ids to mark seen once they are enqueued.
    Shared by polling and by pushed (WebSub) deliveries."""
    for what, why in parsed.skipped:
        log.warning("entry_skipped", feed=feed.label, entry=what[:200], reason=why)
    if parsed.warning:
        log.info("feed_recovered", feed=feed.label, warning=parsed.warning[:300])

    entries = []
    for entry in parsed.entries:
        try:
            canonical = canonicalize(entry.link)
        except InvalidURL as exc:
            log.warning("entry_skipped", feed=feed.label, entry=entry.link[:200], reason="invalid_url", error=str(exc))
            continue
        entries.append((entry, canonical, article_id(canonical)))
    metrics.ENTRIES_SEEN.inc(len(entries))

    # An entry is known if its canonical URL or its guid was seen, from this feed or any other.
    ids = [aid for _, _, aid in entries]
    guid_ids = [_guid_id(feed, e.guid) if e.guid else aid for e, _, aid in entries]
    known = ctx.seen.contains_many(ids + guid_ids) if entries else []
    n = len(entries)
    titles = [e.title for e, _, _ in entries if e.title]
    batch = uuid.uuid4().hex
    info = feed_info(feed)
    deadline = time.time() + ctx.settings.clean_hold_seconds
    jobs: list[PageJob] = []
    seen_ids: list[str] = []
    fresh: set[str] = set()
    for i, (entry, canonical, aid) in enumerate(entries):
        seen_ids += [aid, guid_ids[i]]
        if known[i] or known[n + i] or aid in fresh:
            continue
        fresh.add(aid)
        jobs.append(PageJob(
            article_id=aid, url=entry.link, canonical_url=canonical, title=entry.title,
            summary=entry.summary[:2000], published=entry.published, feed=info,
            other_titles=[t for t in titles if t != entry.title][:MAX_OTHER_TITLES],
            batch=batch, batch_deadline=deadline, run=run_id,
        ))
    if jobs:
        pipe = ctx.r.pipeline(transaction=False)
        pipe.incrby(key("batch", batch), len(jobs))
        pipe.expire(key("batch", batch), int(ctx.settings.clean_hold_seconds) + 3600)
        pipe.execute()
    metrics.ENTRIES_NEW.inc(len(jobs))
    return jobs, seen_ids


def _guid_id(feed: Feed, guid: str) -> str:
    """A guid that is a URL identifies the story everywhere; a bare one ("1234") only within its own feed."""
    scope = "" if guid.startswith(("http://", "https://")) else feed.id
    return digest(f"guid:{scope}:{guid}")


def commit_poll(ctx: Context, result: PollResult, run_id: str | None = None, *, push: bool = False) -> None:
    """After the fan-out: remember the entries as seen, store validators, schedule the next poll (at the
    feed's ceiling when ``push`` is live for it), count."""
    if result.outcome not in ("error", "deferred"):
        if result.seen_ids:
            ctx.seen.add_many(result.seen_ids)
        assert result.answer is not None
        ctx.schedule.record_success(result.feed, result.answer, push=push, state=result.state)
    metrics.FEEDS_POLLED.labels(outcome=result.outcome).inc()
    runs.count(ctx.r, f"polled:{result.outcome}", run_id=run_id)
    log.info("feed_polled", feed=result.feed.label, outcome=result.outcome, new=len(result.jobs))


def _poll_failed(ctx: Context, feed: Feed, reason: str, error: str, retry_after: float | None,
                 run_id: str | None) -> PollResult:
    delay = ctx.schedule.record_failure(feed, reason=reason, retry_after=retry_after)
    log.error("feed_failed", feed=feed.label, url=feed.url, reason=reason, error=error, next_poll_in=round(delay))
    ctx.dead_letter(stage="poll", reason=reason, url=feed.url, error=error, payload={"feed_id": feed.id},
                    run_id=run_id)
    return PollResult(feed, "error", error=reason)
