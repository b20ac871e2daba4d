"""End to end on real parts: a local HTTP server serving a generated news site, the real Redis, and a real
Celery worker process. Nothing is mocked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import redis

from tests.pipeline_helpers import poll_and_wait, published
from worker.demo.server import LocalServer, Response
from worker.demo.site import build_site
from worker.feeds.feedlist import Feed

pytestmark = [pytest.mark.usefixtures("celery_worker"), pytest.mark.cluster]
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "worker/publish/schema/article.schema.json").read_text())
REQUIRED = {"id", "url", "canonical_url", "feed", "site", "title", "text", "published", "language", "fetched_at"}


def serve_site(server: LocalServer, n: int = 8, seed: int = 1) -> Any:
    site = build_site(server.url(""), n_articles=n, seed=seed)
    server.routes.update(site.routes)
    return site


def test_feed_of_n_entries_yields_n_clean_articles(redis_client: redis.Redis, http_server: LocalServer) -> None:
    site = serve_site(http_server, n=8)
    feed = Feed(url=http_server.url(site.feed_path), name="gazette", tags=("local",))
    counts = poll_and_wait(redis_client, [feed])
    articles = published(redis_client)
    assert counts.get("published:articles") == 8, counts
    assert len(articles) == 8 and len({a["id"] for a in articles}) == 8
    by_url = {a["canonical_url"]: a for a in articles}
    for art in site.articles:
        msg = by_url[http_server.url(f"/articles/{art.slug}.html")]
        jsonschema.validate(msg, SCHEMA)
        assert msg.keys() >= REQUIRED
        assert msg["feed"]["name"] == "gazette" and msg["feed"]["tags"] == ["local"]
        assert msg["title"] == art.title
        assert msg["language"] == "en"
        # every paragraph of the article survives cleaning
        for paragraph in art.paragraphs:
            assert paragraph in msg["text"]


def test_second_and_later_articles_are_published_clean(redis_client: redis.Redis, http_server: LocalServer) -> None:
    site = serve_site(http_server, n=10, seed=2)
    poll_and_wait(redis_client, [Feed(url=http_server.url(site.feed_path))])
    titles = {a.title for a in site.articles}
    for msg in published(redis_client):
        lines = msg["text"].split("\n")
        assert not [ln for ln in lines if ln in titles and ln != msg["title"]], "sidebar headlines left"
        assert not [ln for ln in lines if "WeChat" in ln or "Last updated" in ln], "template lines left"
        assert msg["cleaning"]["removed"] > 0


def test_second_poll_gets_304_and_publishes_nothing(redis_client: redis.Redis, http_server: LocalServer) -> None:
    site = serve_site(http_server, n=3)
    feed = Feed(url=http_server.url(site.feed_path))
    poll_and_wait(redis_client, [feed])
    assert len(published(redis_client)) == 3
    counts = poll_and_wait(redis_client, [feed])
    assert counts.get("polled:not_modified") == 1, counts
    assert len(published(redis_client)) == 3


def test_same_article_in_two_feeds_is_published_once(redis_client: redis.Redis, http_server: LocalServer) -> None:
    site = serve_site(http_server, n=4)
    feed_body = site.routes[site.feed_path].body
    http_server.routes["/other-feed.xml"] = Response(feed_body, "application/rss+xml")
    feeds = [Feed(url=http_server.url(site.feed_path)), Feed(url=http_server.url("/other-feed.xml"))]
    poll_and_wait(redis_client, feeds)
    articles = published(redis_client)
    assert len(articles) == 4 and len({a["id"] for a in articles}) == 4


def test_redelivered_task_does_not_double_publish(redis_client: redis.Redis, http_server: LocalServer) -> None:
    from worker.context import Context
    from worker.core import runs
    from worker.poll.step import poll

    site = serve_site(http_server, n=2)
    feed = Feed(url=http_server.url(site.feed_path))
    from worker.poll.schedule import Schedule

    Schedule(redis_client).sync([feed])
    result = poll(Context(redis_client), feed)
    assert len(result.jobs) == 2
    poll_and_wait(redis_client, [feed])  # the normal path publishes both
    # ...then the same fetch tasks arrive again, as after a redelivery
    from worker.tasks import fetch_article

    hits = dict(http_server.hits)
    runs.start(redis_client, "redeliver", [])
    runs.open_articles(redis_client, "redeliver",
                       [job.model_copy(update={"run": "redeliver"}) for job in result.jobs])
    for job in result.jobs:
        again = job.model_copy(update={"run": "redeliver", "batch": None})
        fetch_article.apply_async((again.encode(),), queue="fetch")
    import time

    deadline = time.monotonic() + 30
    while runs.pending(redis_client, "redeliver") > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runs.pending(redis_client, "redeliver") == 0
    assert len(published(redis_client)) == 2
    assert http_server.hits == hits, "a redelivered task fetched a page that was already published"


def test_cli_extract_on_a_local_page(http_server: LocalServer, tmp_path: Path) -> None:
    site = serve_site(http_server, n=3)
    art = site.articles[0]
    url = http_server.url(f"/articles/{art.slug}.html")
    out = subprocess.run([sys.executable, "-m", "worker.cli", "extract", url], capture_output=True, text=True,
                         timeout=60, check=True)
    msg = json.loads(out.stdout)
    jsonschema.validate(msg, SCHEMA)
    assert msg["title"] == art.title and art.paragraphs[0] in msg["text"]
    page = tmp_path / "page.html"
    page.write_bytes(site.routes[f"/articles/{art.slug}.html"].body)
    out = subprocess.run([sys.executable, "-m", "worker.cli", "extract", str(page)], capture_output=True,
                         text=True, timeout=60, check=True)
    assert json.loads(out.stdout)["title"] == art.title


def test_a_page_is_counted_off_its_poll_batch_once(redis_client: redis.Redis, http_server: LocalServer) -> None:
    """The cold-start hold waits while a poll batch has pages left: ``fetch_and_extract`` counts a page that
    goes on to publishing off its batch (in the round trip that teaches the site memory its lines); a page
    that goes nowhere is left for the task to count."""
    from tests.pipeline_helpers import fetch_and_extract
    from worker.context import Context
    from worker.core.keys import key
    from worker.core.settings import Settings
    from worker.core.urls import site_of
    from worker.poll.schedule import Schedule
    from worker.poll.step import poll

    site = serve_site(http_server, n=3)
    feed = Feed(url=http_server.url(site.feed_path))
    ctx = Context(redis_client, Settings(allow_private_networks=True, clean_hold_seconds=60))
    Schedule(redis_client).sync([feed])
    tasks = poll(ctx, feed).jobs
    batch = key("batch", tasks[0].batch or "")
    assert int(redis_client.get(batch) or 0) == 3

    prepared = fetch_and_extract(ctx, tasks[0])
    assert prepared is not None
    assert int(redis_client.get(batch) or 0) == 2
    assert ctx.sites.pages_seen(site_of(prepared.final_url)) == 1

    gone = tasks[1].model_copy(update={"url": http_server.url("/no-such-page.html")})
    assert fetch_and_extract(ctx, gone) is None  # a 404: dead-lettered
    assert int(redis_client.get(batch) or 0) == 2


def test_an_unreadable_message_is_dead_lettered(redis_client: redis.Redis) -> None:
    """A message the stage cannot read (another program's, or broken) is not dropped in silence."""
    import time

    from worker.publish.deadletter import DeadLetters
    from worker.tasks import extract_article, fetch_article

    fetch_article.apply_async(({"url": "http://example.com/a"},), queue="fetch")
    extract_article.apply_async(({"final_url": "http://example.com/b"},), queue="extract")
    deadline = time.monotonic() + 30
    while len(DeadLetters(redis_client).list()) < 2:
        assert time.monotonic() < deadline, DeadLetters(redis_client).list()
        time.sleep(0.1)
    letters = {(dl.stage, dl.reason, dl.url) for dl in DeadLetters(redis_client).list()}
    assert letters == {("fetch", "bad_message", "http://example.com/a"), ("extract", "bad_message", "")}
