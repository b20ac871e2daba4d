"""The typed messages that pass between the stages, and the only place that turns them into JSON and back.

    poll ──PageJob──► download ──FetchedPage──► extract ──PreparedArticle──► publish (cold-start hold only)

Each model carries a ``version``. Decoding is tolerant on purpose, so a rolling upgrade never crashes on what
an older or newer worker left in a queue: unknown fields are ignored, missing ones take their defaults, and the
version-1 payloads (the plain dicts of the releases before these models) read as the same models.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

PAGE_JOB_VERSION = 2  # 1: the untyped dict of earlier releases (same keys, no version field)
FETCHED_PAGE_VERSION = 1
PREPARED_VERSION = 2  # 1: the untyped dict (PageJob's keys plus final_url, site, fetched_at, extracted)


def now_iso() -> str:
    """The time stamps messages carry (``fetched_at``): UTC, ISO 8601, whole seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    def encode(self) -> dict[str, Any]:
        """The JSON-safe form a Celery task argument carries."""
        return self.model_dump(mode="json")


class FeedInfo(_Message):
    """What a page's message carries about the feed it came from: enough to route, tag and be polite."""

    id: str
    url: str
    name: str | None = None
    tags: list[str] = Field(default_factory=list)
    route: str | None = None
    language: str | None = None
    robots: bool = True
    retry_after_scope: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.url


class PageJob(_Message):
    """poll → download: one new feed entry to fetch."""

    version: int = PAGE_JOB_VERSION
    article_id: str
    url: str
    canonical_url: str
    title: str | None = None
    summary: str = ""
    published: str | None = None  # ISO 8601, from the feed entry
    feed: FeedInfo
    other_titles: list[str] = Field(default_factory=list)  # headlines of the same poll: cleaning's hints
    batch: str | None = None  # the poll batch, counted down as its pages are observed (cold start)
    batch_deadline: float = 0.0  # epoch seconds; a held page waits no longer than this
    run: str | None = None  # the `ingest run --once` this page belongs to
    host_busy: int = 0  # times the page found its host busy: grows the wait, never uses up a retry
    reserved_at: float = 0.0  # epoch seconds of the host slot reserved for it when the host was busy


class FetchedPage(_Message):
    """download → extract: the page downloaded; its compressed body waits in Redis under ``body_key``."""

    version: int = FETCHED_PAGE_VERSION
    job: PageJob
    final_url: str  # after redirects
    fetched_at: str
    body_key: str
    body_bytes: int  # decompressed size, for the logs and the in-flight figures
    charset: str | None = None  # from the Content-Type header; decoding waits for the extract stage
    owner: str  # the claim token the download took; the extract stage holds and releases the same claim


class ExtractedText(_Message):
    """What extraction kept of a page (``worker.extract.page.Extracted``, with the title settled)."""

    title: str
    text: str
    author: str | None = None
    date: str | None = None
    language: str | None = None
    sitename: str | None = None
    description: str | None = None
    slots: list[str] = Field(default_factory=list)  # where each text line sat in the page (site memory)


class PreparedArticle(_Message):
    """extract → publish: a page extracted and observed, waiting (cold start) to be cleaned and published."""

    version: int = PREPARED_VERSION
    job: PageJob
    final_url: str
    site: str
    fetched_at: str
    extracted: ExtractedText

    @model_validator(mode="before")
    @classmethod
    def _from_v1(cls, data: Any) -> Any:
        # version 1 was PageJob's dict with the extract stage's keys added at the top level
        if isinstance(data, dict) and "job" not in data and "article_id" in data:
            return {**data, "job": data, "version": PREPARED_VERSION}
        return data
