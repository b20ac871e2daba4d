"""The extract stage's step: the page handed over by the download stage, decoded and extracted (trafilatura),
its lines taught to the site memory, and the ``PreparedArticle`` that the publish step cleans and publishes."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import structlog

from worker import metrics
from worker.core import runs
from worker.core.messages import ExtractedText, FetchedPage, PreparedArticle
from worker.core.redisconn import one_trip
from worker.core.urls import site_of
from worker.download.handoff import StoredPage
from worker.extract.page import Extracted, extract_page
from worker.net.fetch import decode_body

if TYPE_CHECKING:
    from worker.context import Context

log = structlog.get_logger("worker.extract.step")


def extract(ctx: Context, page: FetchedPage, stored: StoredPage) -> PreparedArticle | None:
    """Extract the page, observe its lines for the site memory and count it off its poll batch (one round
    trip). Returns None when the page has no main text (dead-lettered; the caller counts it off its batch)."""
    job = page.job
    started = time.monotonic()
    # the feed entry's date makes htmldate's search (~2 ms a page, more on old pages) unnecessary
    extracted = extract_page(decode_body(stored.body, stored.charset), page.final_url,
                             date_search=not job.published)
    if extracted is None or not extracted.text.strip():
        log.error("page_failed", reason="no_text", error="no main text found")
        ctx.dead_letter(stage="extract", reason="no_text", url=page.final_url, error="no main text found",
                        payload=job.encode(), run_id=job.run)
        return None
    site = site_of(page.final_url)
    title = extracted.title or job.title or ""
    pipe = one_trip(ctx.r)
    ctx.sites.observe(site, job.article_id, extracted.text, title, [*job.other_titles, job.title or ""],
                      slots=extracted.slots, pipe=pipe)
    runs.batch_done(pipe, job.batch)
    ctx.sites.share(pipe.execute()[0])  # lines that just became boilerplate here teach the fleet-wide prior
    metrics.EXTRACT_SECONDS.observe(time.monotonic() - started)
    return PreparedArticle(
        job=job, final_url=page.final_url, site=site, fetched_at=page.fetched_at,
        extracted=extracted_text(extracted, title))


def extracted_text(extracted: Extracted, title: str) -> ExtractedText:
    """The message form of what ``extract_page`` found, with the title settled."""
    return ExtractedText(title=title, text=extracted.text, author=extracted.author, date=extracted.date,
                         language=extracted.language, sitename=extracted.sitename, description=extracted.description,
                         slots=list(extracted.slots))
