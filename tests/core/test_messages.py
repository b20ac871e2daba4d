"""The typed messages between the stages: JSON round trips, and the tolerance a rolling upgrade needs (messages
of the untyped release before them, and of a newer release with fields this one does not know)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from worker.core.messages import (
    PAGE_JOB_VERSION,
    ExtractedText,
    FeedInfo,
    FetchedPage,
    PageJob,
    PreparedArticle,
)

FEED = {"id": "f1", "url": "http://example.com/feed.xml", "name": "Example", "tags": ["t"], "route": None,
        "language": "en", "robots": True, "retry_after_scope": None}
# A fetch task's payload as the release before the typed messages queued it (worker/pipeline.py's dict).
V1_TASK = {"article_id": "0123456789abcdef", "url": "http://example.com/a", "canonical_url": "http://example.com/a",
           "title": "A", "summary": "s", "published": None, "feed": FEED, "other_titles": ["B", "C"],
           "batch": "b1", "batch_deadline": 1.5, "run": "r1", "host_busy": 2}


def job() -> PageJob:
    return PageJob.model_validate(V1_TASK)


def test_a_version_1_fetch_payload_reads_as_a_page_job() -> None:
    j = job()
    assert j.feed == FeedInfo.model_validate(FEED) and j.feed.label == "Example"
    assert (j.article_id, j.other_titles, j.batch, j.run, j.host_busy) == ("0123456789abcdef", ["B", "C"], "b1",
                                                                         "r1", 2)
    assert j.reserved_at == 0.0 and j.version == PAGE_JOB_VERSION


def test_messages_survive_their_json_form() -> None:
    page = FetchedPage(job=job(), final_url="http://example.com/a2", fetched_at="2026-12-01T00:00:00+00:00",
                       body_key="ingest:page:0123456789abcdef", body_bytes=10, charset="utf-8", owner="task-1")
    assert FetchedPage.model_validate(json.loads(json.dumps(page.encode()))) == page
    prepared = PreparedArticle(job=job(), final_url="http://example.com/a2", site="example.com",
                               fetched_at="2026-12-01T00:00:00+00:00", extracted=ExtractedText(title="A", text="t"))
    assert PreparedArticle.model_validate(json.loads(json.dumps(prepared.encode()))) == prepared


def test_fields_of_a_newer_release_are_ignored() -> None:
    newer = job().encode() | {"version": PAGE_JOB_VERSION + 1, "priority": 5}
    newer["feed"] = newer["feed"] | {"weight": 3}
    assert PageJob.model_validate(newer).article_id == "0123456789abcdef"


def test_a_version_1_publish_payload_reads_as_a_prepared_article() -> None:
    old = V1_TASK | {"final_url": "http://example.com/a2", "site": "example.com", "fetched_at": "2026-12-01",
                     "extracted": {"title": "A", "text": "body", "author": None, "date": None, "language": "en",
                                   "sitename": None, "description": None}}
    prepared = PreparedArticle.model_validate(old)
    assert prepared.job == job() and prepared.final_url == "http://example.com/a2"
    assert prepared.extracted.text == "body" and prepared.site == "example.com"


def test_a_message_missing_what_it_needs_is_refused() -> None:
    with pytest.raises(ValidationError):
        PageJob.model_validate({k: v for k, v in V1_TASK.items() if k != "url"})


def test_messages_are_frozen() -> None:
    with pytest.raises(ValidationError):
        job().url = "http://elsewhere/"  # type: ignore[misc]


def test_time_stamps_are_utc_to_the_second() -> None:
    from datetime import UTC, datetime

    from worker.core.messages import now_iso

    stamp = now_iso()
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0 and stamp.endswith("+00:00")
    assert parsed.microsecond == 0 and len(stamp) == len("2026-12-01T11:59:00+00:00")
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 3600  # now, not some fixed time
