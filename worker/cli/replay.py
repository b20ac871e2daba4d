"""Replaying dead letters: a failed feed (poll or push) is made due now, a failed page is sent back to the
fetch queue."""

from __future__ import annotations

import time

from worker.core.messages import PageJob
from worker.core.redisconn import get_redis
from worker.poll.schedule import due_key
from worker.publish.deadletter import DeadLetter


def replay(letter: DeadLetter) -> str | None:
    """Send ``letter`` back through the pipeline; ``None`` when it went, else why it cannot (it is kept)."""
    from worker.tasks import fetch_article

    payload = dict(letter.payload)
    # a failed push keeps no body: polling the feed now fetches the same entries
    if letter.stage in ("poll", "push") and payload.get("feed_id"):
        # XX: a feed since removed from the list (or disabled) is not scheduled again behind the list's back
        if not get_redis().zadd(due_key(), {payload["feed_id"]: time.time()}, xx=True, ch=True):
            return "its feed is no longer scheduled: removed from the feed list or disabled"
        return None
    if "article_id" in payload and "url" in payload:
        # every page letter carries its PageJob (older ones the same keys at the top level, with the extract
        # stage's beside them, which PageJob ignores): downloading it again is the simple, safe path
        job = PageJob.model_validate(payload).model_copy(
            update={"run": None, "batch": None, "host_busy": 0, "reserved_at": 0.0})
        fetch_article.apply_async((job.encode(),), queue="fetch")
        return None
    return "no feed or page in its payload"
