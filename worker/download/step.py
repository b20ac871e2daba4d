"""The download stage's step: one article page fetched politely (robots.txt, a host slot), its body left
compressed in Redis for the extract stage (``handoff``), and the ``FetchedPage`` message that tells it so.

It holds no CPU-bound work: decoding, extraction and cleaning wait for the extract stage, so a download worker
can keep hundreds of requests in flight on a thread pool.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import structlog

from worker import metrics
from worker.core.errors import RetryLater
from worker.core.messages import FetchedPage, PageJob, now_iso
from worker.download import handoff
from worker.download.robots import UNAVAILABLE_SECONDS, robots_url
from worker.net.fetch import FetchError
from worker.net.politeness import HostBusy, retry_after_scope

if TYPE_CHECKING:
    from worker.context import Context

log = structlog.get_logger("worker.download.step")


def download(ctx: Context, job: PageJob, *, owner: str, final_attempt: bool = True,
             stored: handoff.StoredPage | bool | None = True) -> FetchedPage | None:
    """Fetch the page and hand it over. Returns the extract stage's message, or None when the page was
    dead-lettered (robots.txt refused it, or the download failed for good). A page this task had already
    handed over (a redelivery) is not fetched again: ``stored`` is what the caller found of it
    (``handoff.describe``), True to look here. Raises RetryLater for a busy host (not counted as an attempt)
    and for transient failures unless this is the final attempt."""
    if stored is True:
        stored = handoff.describe(ctx.r, job.article_id)
    if not isinstance(stored, handoff.StoredPage):
        try:
            if not robots_permit(ctx, job, final_attempt=final_attempt):
                return None
            resp = ctx.polite_fetch(job.url, "page", reserved_at=job.reserved_at)
            metrics.PAGES_FETCHED.labels(status="ok").inc()
        except HostBusy as exc:
            # The host is at its fleet-wide limit: nothing failed, so the retry does not use up an attempt.
            raise RetryLater("host_busy", exc.wait, counted=False, reserved_at=exc.reserved_at) from exc
        except FetchError as exc:
            metrics.PAGES_FETCHED.labels(status=exc.reason).inc()
            scope = retry_after_scope(ctx.settings, job.feed.retry_after_scope)
            ctx.polite.honour_retry_after(job.url, status=exc.status, retry_after=exc.retry_after, scope=scope,
                                          kind="page")
            if exc.retryable and not final_attempt:
                raise RetryLater(exc.reason, exc.retry_after) from exc
            log.error("page_failed", reason=exc.reason, error=str(exc))
            ctx.dead_letter(stage="fetch", reason=exc.reason, url=job.url, error=str(exc), payload=job.encode(),
                            run_id=job.run)
            return None
        stored = handoff.StoredPage(resp.body, resp.url, resp.charset, now_iso())
        page = _message(job, stored, owner, len(resp.body))
        packed = handoff.store(ctx.r, job.article_id, stored, ctx.settings.page_ttl)
        metrics.HANDOFF_BYTES.observe(packed)
        return page
    log.info("page_already_downloaded")  # a redelivery: the extract message goes out again, the page does not
    return _message(job, stored, owner, 0)


def _message(job: PageJob, stored: handoff.StoredPage, owner: str, size: int) -> FetchedPage:
    return FetchedPage(job=job, final_url=stored.final_url, fetched_at=stored.fetched_at,
                       body_key=handoff.page_key(job.article_id), body_bytes=size, charset=stored.charset,
                       owner=owner)


def warm_robots(ctx: Context, jobs: list[PageJob]) -> None:
    """Before a poll fans out its pages, fetch the robots.txt of their hosts that the fleet does not have yet,
    once (a poll's pages arrive together: without this, all but one would find the file being fetched and be
    put off). A busy host or an unreachable file is left to the pages' own check."""
    if not ctx.settings.robots_obey:
        return
    origins = {robots_url(job.url): job.url for job in jobs if job.feed.robots is not False}
    for url in origins.values():
        with contextlib.suppress(HostBusy):
            ctx.robots.check(url)


def robots_permit(ctx: Context, job: PageJob, *, final_attempt: bool) -> bool:
    """Whether robots.txt lets us fetch the page (``robots_obey``, unless its feed says ``robots: false``).
    Disallowed: a dead letter, never retried. robots.txt unreachable: RFC 9309 says disallow for now, so
    the page is retried later (RetryLater), and dead-lettered as ``robots_unavailable`` on its last attempt.
    Raises HostBusy when the host's slots are taken while its robots.txt must be fetched."""
    if not ctx.settings.robots_obey or job.feed.robots is False:
        metrics.ROBOTS_DECISIONS.labels(decision="skipped").inc()
        return True
    verdict = ctx.robots.check(job.url, reserved_at=job.reserved_at)
    metrics.ROBOTS_DECISIONS.labels(decision=verdict.decision).inc()
    if verdict.decision == "allowed":
        return True
    if verdict.decision == "unavailable" and not final_attempt:
        raise RetryLater("robots_unavailable", UNAVAILABLE_SECONDS)  # sooner would only meet the cached "no"
    reason = "robots_disallowed" if verdict.decision == "disallowed" else "robots_unavailable"
    error = ("robots.txt disallows this page for " + ctx.robots.token if verdict.decision == "disallowed"
             else "robots.txt unreachable (5xx or network error): RFC 9309 says disallow all")
    log.error("page_failed", reason=reason, error=error)
    ctx.dead_letter(stage="fetch", reason=reason, url=job.url, error=error, payload=job.encode(), run_id=job.run)
    return False
