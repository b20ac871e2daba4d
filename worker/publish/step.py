"""The publish stage's steps: wait for a new site's batch (cold start), clean the text with what the site
memory learnt, recognise the same story, and publish the article once to the streams its routes choose."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import redis
import structlog

from worker import metrics
from worker.core import runs
from worker.core.messages import PageJob, PreparedArticle, now_iso
from worker.core.urls import article_id, canonicalize, site_of
from worker.extract.page import extract_page
from worker.extract.step import extracted_text
from worker.feeds.feedlist import Feed
from worker.poll.step import feed_info
from worker.publish.article import Article, Cleaning, FeedRef
from worker.publish.writer import streams_for

if TYPE_CHECKING:
    from worker.context import Context

log = structlog.get_logger("worker.publish.step")


def should_hold(ctx: Context, prepared: PreparedArticle) -> bool:
    """A page of a barely known site waits for the rest of its poll batch to be observed (cold start), but
    never longer than ``clean_hold_seconds``: freshness is traded for cleanliness only while it pays."""
    job = prepared.job
    if not job.batch or time.time() >= job.batch_deadline:
        return False
    if not ctx.sites.needs_hold(prepared.site):
        return False
    return runs.batch_left(ctx.r, job.batch) > 0


def build_article(ctx: Context, prepared: PreparedArticle) -> Article:
    """The clean article: the site memory's cleaning applied to the extracted text, with its metadata."""
    ex, job = prepared.extracted, prepared.job
    cleaned = ctx.sites.clean(prepared.site, job.article_id, ex.text, ex.title, slots=ex.slots)
    if cleaned.removed:
        log.debug("lines_removed", removed=[{"line": line, "reason": why} for line, why in cleaned.removed])
    for reason, n in cleaned.reasons.items():
        metrics.LINES_REMOVED.labels(reason=reason).inc(n)
    feed = job.feed
    return Article(
        id=job.article_id,
        url=prepared.final_url,
        canonical_url=job.canonical_url,
        feed=FeedRef(id=feed.id, url=feed.url, name=feed.name, tags=list(feed.tags)),
        site=prepared.site,
        title=ex.title or job.title or "",
        text=cleaned.text,
        published=ex.date or job.published,
        language=ex.language or feed.language,
        fetched_at=prepared.fetched_at,
        author=ex.author,
        site_name=ex.sitename,
        description=ex.description,
        summary=job.summary or None,
        tags=list(feed.tags),
        cleaning=Cleaning(removed=len(cleaned.removed), reasons=dict(cleaned.reasons)),
    )


def publish(ctx: Context, prepared: PreparedArticle, *,
            bookkeeping: redis.client.Pipeline | None = None) -> tuple[Article, list[str]]:
    """Clean, check for the same story, and publish. Returns the article and the streams it went to (empty
    when it was already published, or dropped as a duplicate). The run counters go to ``bookkeeping`` when
    given (the caller sends them with its own closing writes), else straight to Redis."""
    counters = bookkeeping if bookkeeping is not None else ctx.r
    article = build_article(ctx, prepared)
    run_id = prepared.job.run
    dup = ctx.stories.check_and_remember(
        article.id, article.title, article.text, article.canonical_url, alt_urls=[prepared.final_url])
    if dup is not None:
        article.duplicate_of, article.duplicate_reason = dup.of, dup.reason
        metrics.DUPLICATES.labels(reason=dup.reason).inc()
        runs.count(counters, f"duplicates:{dup.reason}", run_id=run_id)
        log.info("duplicate", duplicate_of=dup.of, reason=dup.reason, policy=ctx.settings.duplicate_policy)
        streams = [ctx.settings.duplicate_stream] if ctx.settings.duplicate_policy == "mark" else []
        ctx.publisher.publish(article, streams)
        return article, []
    streams = streams_for(article, prepared.job.feed.route, ctx.publisher.routes, ctx.settings.default_stream)
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
    ctx.sites.observe(site, aid, extracted.text, extracted.title, (), slots=extracted.slots)
    job = PageJob(article_id=aid, url=url, canonical_url=canonical, feed=feed_info(feed))
    prepared = PreparedArticle(
        job=job, final_url=url, site=site, fetched_at=now_iso(),
        extracted=extracted_text(extracted, extracted.title or ""))
    return build_article(ctx, prepared)
