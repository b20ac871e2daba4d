"""The page's hand-off between the stages, on the real Redis and a real local server: what the download step
leaves for the extract stage, how big it is, when it expires, and the sweep's index of pages not done yet."""

from __future__ import annotations

import redis

from worker.context import Context
from worker.core.messages import PageJob
from worker.core.settings import Settings
from worker.core.urls import article_id, canonicalize
from worker.demo.server import LocalServer
from worker.demo.site import build_site
from worker.download import handoff
from worker.download.step import download
from worker.feeds.feedlist import Feed
from worker.poll.step import feed_info


def job_for(server: LocalServer) -> tuple[PageJob, bytes]:
    site = build_site(server.url(""), n_articles=1, seed=81)
    server.routes.update(site.routes)
    path = site.article_path(site.articles[0].slug)
    url = server.url(path)
    job = PageJob(article_id=article_id(canonicalize(url)), url=url, canonical_url=canonicalize(url),
                  feed=feed_info(Feed(url=server.url(site.feed_path))))
    return job, site.routes[path].body


def test_download_leaves_the_page_compressed_with_a_ttl(redis_client: redis.Redis, http_server: LocalServer) -> None:
    job, body = job_for(http_server)
    ctx = Context(redis_client, Settings(allow_private_networks=True, page_ttl=120))
    page = download(ctx, job, owner="t1")
    assert page is not None and page.owner == "t1" and page.body_bytes == len(body)
    stored = handoff.load(redis_client, job.article_id)
    assert stored is not None and stored.body == body and stored.final_url == job.url
    key = handoff.page_key(job.article_id)
    assert 0 < redis_client.ttl(key) <= 120
    assert len(redis_client.hget(key, "body") or b"") < len(body) * 0.7  # compressed (a small generated page)
    # a redelivered download rebuilds the same message from what it stored, without fetching again
    hits = dict(http_server.hits)
    again = download(ctx, job, owner="t1", stored=handoff.describe(redis_client, job.article_id))
    assert again is not None and again.final_url == page.final_url and http_server.hits == hits
