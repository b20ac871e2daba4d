"""The pipeline's steps as plain functions (no Celery here): poll a feed, fetch and extract a page, clean,
recognise the same story, publish. ``worker.tasks`` wraps them in thin Celery tasks; tests, ``ingest extract``
and the evaluation call them directly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal

import httpx
import redis
import structlog

from worker import metrics
from worker.clean.memory import SiteMemory
from worker.core import runs
from worker.core.keys import digest, key
from worker.core.redisconn import OneTrip
from worker.core.settings import Settings, get_settings
from worker.core.urls import InvalidURL, article_id, canonicalize, site_of
from worker.dedup.buckets import BucketSet
from worker.dedup.stories import StoryIndex
from worker.download.robots import UNAVAILABLE_SECONDS, Robots
from worker.extract.page import extract_page
from worker.feeds.feedlist import Feed
from worker.net.fetch import FetchError, FetchResult, Kind, decode_html, fetch, make_client
from worker.net.politeness import HostBusy, Politeness, retry_after_scope
from worker.poll.parse import FeedError, ParsedFeed, parse_feed
from worker.poll.schedule import Answer, FeedState, Schedule, feed_summary
from worker.publish.article import Article, Cleaning, FeedRef
from worker.publish.deadletter import DeadLetters
from worker.publish.writer import Publisher, streams_for

log = structlog.get_logger("worker.pipeline")

MAX_OTHER_TITLES = 100


class RetryLater(Exception):
    """A transient failure (timeout, 5xx): the task should be retried; carries the server's wish if any.
    ``counted`` False (a busy host: nothing failed) asks for a retry that does not use up an attempt."""

    def __init__(self, reason: str, countdown: float | None = None, *, counted: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.countdown = countdown
        self.counted = counted


@dataclass
class Context:
    """Everything a step needs, built once per worker process."""

    r: redis.Redis
    settings: Settings = field(default_factory=get_settings)

    @cached_property
    def http(self) -> httpx.Client:
        return make_client(self.settings)

    @cached_property
    def schedule(self) -> Schedule:
        return Schedule(self.r, self.settings)

    @cached_property
    def seen(self) -> BucketSet:
        return BucketSet(self.r, "seen", self.settings.seen_ttl_days * 86400)

    @cached_property
    def publisher(self) -> Publisher:
        return Publisher(self.r, self.settings)

    @cached_property
    def sites(self) -> SiteMemory:
        return SiteMemory(self.r, self.settings)

    @cached_property
    def stories(self) -> StoryIndex:
        return StoryIndex(self.r, self.settings)

    @cached_property
    def dead(self) -> DeadLetters:
        return DeadLetters(self.r, self.settings)

    @cached_property
    def polite(self) -> Politeness:
        return Politeness(self.r, self.settings)

    @cached_property
    def robots(self) -> Robots:
        return Robots(self.r, self.settings, self.http, self.polite)


def polite_fetch(ctx: Context, url: str, kind: Kind, *, etag: str | None = None,
                 last_modified: str | None = None) -> FetchResult:
    """``fetch`` inside one of the host's politeness slots; the fetch histogram times the download only, not
    the wait. Raises HostBusy or FetchError."""
    with ctx.polite.slot(url, kind=kind):
        started = time.monotonic()
        try:
            return fetch(url, kind=kind, settings=ctx.settings, etag=etag, last_modified=last_modified,
                         client=ctx.http)
        finally:
            metrics.FETCH_SECONDS.observe(time.monotonic() - started)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- poll ---------------------------------------------------------------------------------------------------


@dataclass
class PollResult:
    feed: Feed
    # deferred: the feed's host was at its politeness limit; it is polled again soon, nothing is recorded
    outcome: Literal["new_entries", "no_new_entries", "not_modified", "unchanged", "deferred", "error"]
    tasks: list[dict[str, Any]] = field(default_factory=list)
    seen_ids: list[str] = field(default_factory=list)
    error: str | None = None
    # what to record in the schedule once the tasks are safely enqueued, and the state the poll started from
    answer: Answer | None = None
    state: FeedState | None = None
    # WebSub discovery: the advertised hub and the feed's own URL (Link header first, then the feed's links)
    hub: str | None = None
    self_url: str | None = None


def poll(ctx: Context, feed: Feed, run_id: str | None = None) -> PollResult:
    """Fetch and parse one feed; return one task payload per entry not seen before. Nothing is marked seen
    and the validators are not stored until ``commit_poll`` runs after the fan-out, so a crash in between
    re-polls (publishing is idempotent) instead of losing entries."""
    state = ctx.schedule.state(feed.id)
    try:
        resp = polite_fetch(ctx, feed.url, "feed", etag=state.etag, last_modified=state.last_modified)
    except HostBusy as exc:
        # Not the feed's fault: no error counted, validators untouched, polled again once the host frees up.
        ctx.schedule.defer(feed.id, exc.wait)
        log.info("feed_deferred", feed=feed.label, host=exc.host, retry_in=round(exc.wait, 1))
        return PollResult(feed, "deferred")
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
    tasks, seen_ids = new_entries(ctx, feed, parsed, run_id)
    answer = dataclasses.replace(
        answer, parsed=True, ttl=parsed.ttl_seconds, skip_hours=parsed.skip_hours, skip_days=parsed.skip_days,
        published=tuple(_epoch(t.get("published")) for t in tasks))
    return PollResult(feed, "new_entries" if tasks else "no_new_entries", tasks=tasks, seen_ids=seen_ids,
                      answer=answer, state=state, hub=resp.links.get("hub") or parsed.hub,
                      self_url=resp.links.get("self") or parsed.self_url)


def _epoch(iso: str | None) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp() if iso else None
    except ValueError:
        return None


def new_entries(ctx: Context, feed: Feed, parsed: ParsedFeed,
                run_id: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The fetch-task payloads of a parsed feed's entries not seen before, and the ids to mark seen once
    they are enqueued. Shared by polling and by pushed (WebSub) deliveries."""
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
    tasks: list[dict[str, Any]] = []
    seen_ids: list[str] = []
    fresh: set[str] = set()
    for i, (entry, canonical, aid) in enumerate(entries):
        seen_ids += [aid, guid_ids[i]]
        if known[i] or known[n + i] or aid in fresh:
            continue
        fresh.add(aid)
        tasks.append({
            "article_id": aid,
            "url": entry.link,
            "canonical_url": canonical,
            "title": entry.title,
            "summary": entry.summary[:2000],
            "published": entry.published,
            "feed": feed_summary(feed),
            "other_titles": [t for t in titles if t != entry.title][:MAX_OTHER_TITLES],
            "batch": batch,
            "batch_deadline": time.time() + ctx.settings.clean_hold_seconds,
            "run": run_id,
        })
    if tasks:
        pipe = ctx.r.pipeline(transaction=False)
        pipe.incrby(key("batch", batch), len(tasks))
        pipe.expire(key("batch", batch), int(ctx.settings.clean_hold_seconds) + 3600)
        pipe.execute()
    metrics.ENTRIES_NEW.inc(len(tasks))
    return tasks, seen_ids


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
    log.info("feed_polled", feed=result.feed.label, outcome=result.outcome, new=len(result.tasks))


def _poll_failed(ctx: Context, feed: Feed, reason: str, error: str, retry_after: float | None,
                 run_id: str | None) -> PollResult:
    delay = ctx.schedule.record_failure(feed, reason=reason, retry_after=retry_after)
    log.error("feed_failed", feed=feed.label, url=feed.url, reason=reason, error=error, next_poll_in=round(delay))
    dead_letter(ctx, stage="poll", reason=reason, url=feed.url, error=error,
                payload={"feed_id": feed.id}, run_id=run_id)
    return PollResult(feed, "error", error=reason)


def dead_letter(ctx: Context, *, stage: str, reason: str, url: str, error: str, payload: dict[str, Any],
                run_id: str | None) -> None:
    ctx.dead.record(stage=stage, reason=reason, url=url, error=error, payload=payload)
    metrics.DEAD_LETTERS.labels(reason=reason).inc()
    runs.count(ctx.r, f"dead_letters:{reason}", run_id=run_id)


# --- fetch and extract ----------------------------------------------------------------------------------------


def batch_done(r: redis.Redis, task: dict[str, Any]) -> None:
    """Count the page off its poll batch (``r`` may be a pipeline)."""
    if task.get("batch"):
        r.decr(key("batch", task["batch"]))


def fetch_and_extract(ctx: Context, task: dict[str, Any], *, final_attempt: bool = True) -> dict[str, Any] | None:
    """Download and extract one page, teach the site memory its lines and count the page off its poll batch.
    Returns the payload for the publish step, or None when the page was dead-lettered (and is not counted
    off its batch: the caller does that). Whether the article was published already is the caller's check
    (the fetch task asks with its claim). Raises RetryLater for transient failures unless this is the final
    attempt."""
    aid = task["article_id"]
    try:
        if not robots_permit(ctx, task, final_attempt=final_attempt):
            return None
        resp = polite_fetch(ctx, task["url"], "page")
        metrics.PAGES_FETCHED.labels(status="ok").inc()
    except HostBusy as exc:
        # The host is at its fleet-wide limit: nothing failed, so the retry does not use up an attempt.
        raise RetryLater("host_busy", exc.wait, counted=False) from exc
    except FetchError as exc:
        metrics.PAGES_FETCHED.labels(status=exc.reason).inc()
        scope = retry_after_scope(ctx.settings, task["feed"].get("retry_after_scope"))
        ctx.polite.honour_retry_after(task["url"], status=exc.status, retry_after=exc.retry_after, scope=scope,
                                      kind="page")
        if exc.retryable and not final_attempt:
            raise RetryLater(exc.reason, exc.retry_after) from exc
        log.error("page_failed", reason=exc.reason, error=str(exc))
        dead_letter(ctx, stage="fetch", reason=exc.reason, url=task["url"], error=str(exc), payload=task,
                    run_id=task.get("run"))
        return None

    started = time.monotonic()
    # the feed entry's date makes htmldate's search (~2 ms a page, more on old pages) unnecessary
    extracted = extract_page(decode_html(resp), resp.url, date_search=not task.get("published"))
    if extracted is None or not extracted.text.strip():
        log.error("page_failed", reason="no_text", error="no main text found")
        dead_letter(ctx, stage="extract", reason="no_text", url=resp.url, error="no main text found",
                    payload=task, run_id=task.get("run"))
        return None
    site = site_of(resp.url)
    title = extracted.title or task.get("title") or ""
    pipe = OneTrip(ctx.r)
    ctx.sites.observe(site, aid, extracted.text, title, [*task.get("other_titles", ()), task.get("title") or ""],
                      pipe=pipe)
    batch_done(pipe, task)
    pipe.execute()
    metrics.EXTRACT_SECONDS.observe(time.monotonic() - started)
    return task | {
        "final_url": resp.url,
        "site": site,
        "fetched_at": now_iso(),
        "extracted": asdict(extracted) | {"title": title},
    }


def robots_permit(ctx: Context, task: dict[str, Any], *, final_attempt: bool) -> bool:
    """Whether robots.txt lets us fetch the page (``robots_obey``, unless its feed says ``robots: false``).
    Disallowed: a dead letter, never retried. robots.txt unreachable: RFC 9309 says disallow for now, so
    the page is retried later (RetryLater), and dead-lettered as ``robots_unavailable`` on its last attempt.
    Raises HostBusy when the host's slots are taken while its robots.txt must be fetched."""
    if not ctx.settings.robots_obey or task["feed"].get("robots") is False:
        metrics.ROBOTS_DECISIONS.labels(decision="skipped").inc()
        return True
    verdict = ctx.robots.check(task["url"])
    metrics.ROBOTS_DECISIONS.labels(decision=verdict.decision).inc()
    if verdict.decision == "allowed":
        return True
    if verdict.decision == "unavailable" and not final_attempt:
        raise RetryLater("robots_unavailable", UNAVAILABLE_SECONDS)  # sooner would only meet the cached "no"
    reason = "robots_disallowed" if verdict.decision == "disallowed" else "robots_unavailable"
    error = ("robots.txt disallows this page for " + ctx.robots.token if verdict.decision == "disallowed"
             else "robots.txt unreachable (5xx or network error): RFC 9309 says disallow all")
    log.error("page_failed", reason=reason, error=error)
    dead_letter(ctx, stage="fetch", reason=reason, url=task["url"], error=error, payload=task,
                run_id=task.get("run"))
    return False


# --- clean, same story, publish --------------------------------------------------------------------------------


def should_hold(ctx: Context, prepared: dict[str, Any]) -> bool:
    """A page of a barely known site waits for the rest of its poll batch to be observed (cold start), but
    never longer than ``clean_hold_seconds``: freshness is traded for cleanliness only while it pays."""
    if time.time() >= prepared.get("batch_deadline", 0) or not prepared.get("batch"):
        return False
    if not ctx.sites.needs_hold(prepared["site"]):
        return False
    return int(ctx.r.get(key("batch", prepared["batch"])) or 0) > 0


def build_article(ctx: Context, prepared: dict[str, Any]) -> Article:
    ex = prepared["extracted"]
    cleaned = ctx.sites.clean(prepared["site"], prepared["article_id"], ex["text"], ex["title"])
    if cleaned.removed:
        log.debug("lines_removed", removed=[{"line": line, "reason": why} for line, why in cleaned.removed])
    for reason, n in cleaned.reasons.items():
        metrics.LINES_REMOVED.labels(reason=reason).inc(n)
    feed = prepared["feed"]
    return Article(
        id=prepared["article_id"],
        url=prepared["final_url"],
        canonical_url=prepared["canonical_url"],
        feed=FeedRef(id=feed["id"], url=feed["url"], name=feed.get("name"), tags=list(feed.get("tags") or [])),
        site=prepared["site"],
        title=ex["title"] or prepared.get("title") or "",
        text=cleaned.text,
        published=ex.get("date") or prepared.get("published"),
        language=ex.get("language") or feed.get("language"),
        fetched_at=prepared["fetched_at"],
        author=ex.get("author"),
        site_name=ex.get("sitename"),
        description=ex.get("description"),
        summary=prepared.get("summary") or None,
        tags=list(feed.get("tags") or []),
        cleaning=Cleaning(removed=len(cleaned.removed), reasons=dict(cleaned.reasons)),
    )


def publish(ctx: Context, prepared: dict[str, Any], *,
            bookkeeping: redis.client.Pipeline | None = None) -> tuple[Article, list[str]]:
    """Clean, check for the same story, and publish. Returns the article and the streams it went to (empty
    when it was already published, or dropped as a duplicate). The run counters go to ``bookkeeping`` when
    given (the caller sends them with its own closing writes), else straight to Redis."""
    counters = bookkeeping if bookkeeping is not None else ctx.r
    article = build_article(ctx, prepared)
    run_id = prepared.get("run")
    dup = ctx.stories.check_and_remember(
        article.id, article.title, article.text, article.canonical_url, alt_urls=[prepared["final_url"]])
    if dup is not None:
        article.duplicate_of, article.duplicate_reason = dup.of, dup.reason
        metrics.DUPLICATES.labels(reason=dup.reason).inc()
        runs.count(counters, f"duplicates:{dup.reason}", run_id=run_id)
        log.info("duplicate", duplicate_of=dup.of, reason=dup.reason, policy=ctx.settings.duplicate_policy)
        streams = [ctx.settings.duplicate_stream] if ctx.settings.duplicate_policy == "mark" else []
        ctx.publisher.publish(article, streams)
        return article, []
    feed = prepared["feed"]
    streams = streams_for(article, feed.get("route"), ctx.publisher.routes, ctx.settings.default_stream)
    entry_ids = ctx.publisher.publish(article, streams)
    if not entry_ids:
        log.info("already_published")
        return article, []
    for stream in streams:
        metrics.ARTICLES_PUBLISHED.labels(stream=stream).inc()
        runs.count(counters, f"published:{stream}", run_id=run_id)
    log.info("published", streams=streams, removed_lines=article.cleaning.removed)
    return article, streams


def process_html(ctx: Context, html: str, url: str, *, feed: Feed | None = None) -> Article:
    """One page through extract + clean, without publishing (``ingest extract``)."""
    canonical = canonicalize(url)
    feed = feed or Feed(url=url, name="ad hoc")
    extracted = extract_page(html, url)
    if extracted is None:
        raise ValueError("no main text found")
    site = site_of(url)
    aid = article_id(canonical)
    ctx.sites.observe(site, aid, extracted.text, extracted.title, ())
    prepared = {
        "article_id": aid, "canonical_url": canonical, "final_url": url, "site": site, "feed": feed_summary(feed),
        "fetched_at": now_iso(), "extracted": asdict(extracted) | {"title": extracted.title or ""},
    }
    return build_article(ctx, prepared)

