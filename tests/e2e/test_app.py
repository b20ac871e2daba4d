"""The Celery app's messages: what a dashboard shows of a task's arguments."""

from __future__ import annotations

import base64
import json

import redis

from worker.app import short_argsrepr
from worker.tasks import fetch_article, poll_feeds


def test_short_argsrepr_names_a_page_by_its_url() -> None:
    payload = {"url": "http://news.example/a", "article_id": "0123456789abcdef",
               "other_titles": [f"headline {i}" for i in range(50)]}
    assert short_argsrepr((payload,)) == "('http://news.example/a',)"
    assert short_argsrepr(({**payload, "final_url": "http://news.example/b"},)) == "('http://news.example/b',)"
    assert len(short_argsrepr(("x" * 10_000, 3))) < 200


def test_sent_messages_carry_the_short_argsrepr(redis_client: redis.Redis) -> None:
    payload = {"url": "http://news.example/a", "article_id": "0123456789abcdef", "feed": {"id": "f", "url": "u"},
               "other_titles": [f"headline {i}" for i in range(50)]}
    # a queue no worker reads (the suite's session worker would take them from fetch and poll)
    fetch_article.apply_async((payload,), queue="test-argsrepr")
    poll_feeds.apply_async((["feed-1", "feed-2"],), queue="test-argsrepr")
    sent = {m["headers"]["task"]: m for m in map(json.loads, redis_client.lrange("test-argsrepr", 0, -1))}
    fetch = sent["worker.tasks.fetch_article"]
    assert fetch["headers"]["argsrepr"] == "('http://news.example/a',)"
    assert json.loads(base64.b64decode(fetch["body"]))[0][0] == payload  # the payload itself is whole
    assert sent["worker.tasks.poll_feeds"]["headers"]["argsrepr"] == "(['feed-1', 'feed-2'],)"
