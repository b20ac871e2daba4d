"""Replaying dead letters: a failed feed (poll or push) is made due now, a failed page is sent back to the
fetch queue."""

from __future__ import annotations

import time

from worker.core.redisconn import get_redis
from worker.poll.schedule import due_key
from worker.publish.deadletter import DeadLetter


def replay(letter: DeadLetter) -> bool:
    from worker.tasks import fetch_article

    payload = dict(letter.payload)
    # a failed push keeps no body: polling the feed now fetches the same entries
    if letter.stage in ("poll", "push") and payload.get("feed_id"):
        get_redis().zadd(due_key(), {payload["feed_id"]: time.time()}, xx=True)
        return True
    if "article_id" in payload and "url" in payload:
        payload.pop("run", None)
        payload.pop("batch", None)
        # a publish-stage letter carries the fetched payload; re-fetching is the simple, safe path
        for k in ("final_url", "site", "fetched_at", "extracted"):
            payload.pop(k, None)
        fetch_article.apply_async((payload,), queue="fetch")
        return True
    return False
