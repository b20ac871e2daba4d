"""robots.txt for article pages: RFC 9309 readings of 2xx/4xx/5xx, one fetch per host for the fleet, the
product token, the pipeline's verdicts (dead letter, retry), and end to end through a worker that obeys it while
a feed with ``robots: false`` does not. Real Redis, real HTTP server, real Celery worker."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.e2e.test_scaling import private, send_polls, spawn, stop, wait_for  # noqa: F401 - private is a fixture
from tests.pipeline_helpers import fetch_and_extract, published
from tests.waiting import wait_until
from worker.context import Context
from worker.core import runs
from worker.core.errors import RetryLater
from worker.core.settings import Settings
from worker.demo.server import LocalServer, Response
from worker.demo.site import all_routes, build_many
from worker.download.robots import Robots, product_token, robots_url
from worker.feeds.feedlist import Feed
from worker.net.fetch import Clients
from worker.net.politeness import Politeness, host_of
from worker.publish.deadletter import DeadLetters

RULES = b"""User-agent: news-ingest-worker
Disallow: /s1/
Disallow: /s2/
Crawl-delay: 0.5

User-agent: *
Disallow: /
"""


def robots_for(r: redis.Redis, **overrides: Any) -> Robots:
    settings = Settings(**({"robots_obey": True, "host_rate": 0} | overrides))
    return Robots(r, settings, Clients(settings), Politeness(r, settings))


def serve_robots(server: LocalServer, resp: Response, agents: list[str] | None = None) -> None:
    def route(handler: BaseHTTPRequestHandler) -> None:
        if agents is not None:
            agents.append(handler.headers.get("User-Agent", ""))
        handler._send(resp)  # type: ignore[attr-defined]

    server.routes["/robots.txt"] = route


def test_product_token_comes_from_the_user_agent_unless_set() -> None:
    assert product_token(Settings()) == "news-ingest-worker"
    assert product_token(Settings(user_agent="MyBot/2.1 (+https://example.org/bot)")) == "MyBot"
    assert product_token(Settings(robots_user_agent="special-bot")) == "special-bot"
    assert robots_url("https://News.example:8443/a/b?c=d") == "https://news.example:8443/robots.txt"


def test_rules_are_fetched_once_per_host_and_matched_by_product_token(redis_client: redis.Redis,
                                                                      http_server: LocalServer) -> None:
    agents: list[str] = []
    serve_robots(http_server, Response(RULES, "text/plain"), agents)
    robots = robots_for(redis_client)
    assert robots.check(http_server.url("/s0/articles/a.html")).decision == "allowed"
    verdict = robots.check(http_server.url("/s1/articles/b.html"))
    assert verdict.decision == "disallowed" and verdict.crawl_delay == 0.5
    # another process, same Redis: the cached file is used
    assert robots_for(redis_client).check(http_server.url("/s2/x.html")).decision == "disallowed"
    assert http_server.hits["/robots.txt"] == 1
    assert agents == [Settings().user_agent]
    # Crawl-delay is now the host's spacing for every worker
    delay = redis_client.get(f"ingest:host:{host_of(http_server.url('/')).replace(':', '%3a')}:crawl-delay")
    assert delay is not None and float(delay) == 0.5


def test_a_worker_keeps_its_copy_no_longer_than_the_fleets_cache_entry(redis_client: redis.Redis,
                                                                       http_server: LocalServer) -> None:
    serve_robots(http_server, Response(RULES, "text/plain"))
    robots = robots_for(redis_client, robots_cache_seconds=1.0)
    assert robots.check(http_server.url("/s1/a.html")).decision == "disallowed"
    redis_client.config_resetstat()
    for page in ("/s1/b.html", "/s0/c.html", "/s2/d.html"):
        robots.check(http_server.url(page))
    assert "cmdstat_hgetall" not in redis_client.info("commandstats")  # answered from the worker's copy
    # the file changes; once the fleet's entry expires (1 s), the worker reads the new one
    serve_robots(http_server, Response(b"User-agent: *\nAllow: /\n", "text/plain"))
    # the worker's copy would otherwise last up to a minute: well past this wait
    wait_until(lambda: robots.check(http_server.url("/s1/a.html")).decision == "allowed", "the new rules",
               timeout=30)
    assert http_server.hits["/robots.txt"] == 2  # fetched again once, not at every check meanwhile


def test_another_agents_rules_do_not_apply(redis_client: redis.Redis, http_server: LocalServer) -> None:
    serve_robots(http_server, Response(b"User-agent: otherbot\nDisallow: /\n", "text/plain"))
    assert robots_for(redis_client).check(http_server.url("/a.html")).decision == "allowed"
    other = robots_for(redis_client, robots_user_agent="otherbot")
    assert other.check(http_server.url("/a.html")).decision == "disallowed"


def test_missing_robots_allows_everything(redis_client: redis.Redis, http_server: LocalServer) -> None:
    robots = robots_for(redis_client)  # the server answers 404 for /robots.txt
    assert robots.check(http_server.url("/private/a.html")).decision == "allowed"
    assert robots.check(http_server.url("/b.html")).decision == "allowed"
    assert http_server.hits["/robots.txt"] == 1


def test_server_error_disallows_for_a_short_while(redis_client: redis.Redis, http_server: LocalServer) -> None:
    serve_robots(http_server, Response(b"oops", "text/plain", 503))
    robots = robots_for(redis_client)
    assert robots.check(http_server.url("/a.html")).decision == "unavailable"
    assert robots.check(http_server.url("/b.html")).decision == "unavailable"
    assert http_server.hits["/robots.txt"] == 1  # the "no" is cached too, briefly
    ttls = [redis_client.pttl(k) for k in redis_client.scan_iter("ingest:robots:*")]
    assert ttls and all(0 < t <= 120_000 for t in ttls), ttls


def page_task(url: str, robots: bool = True) -> dict[str, Any]:
    return {"article_id": "a" * 16, "url": url, "canonical_url": url, "title": "t", "summary": "",
            "published": None, "feed": {"id": "f", "url": url, "robots": robots}, "other_titles": [],
            "run": None}


def test_pipeline_retries_while_robots_is_unreachable_then_dead_letters(redis_client: redis.Redis,
                                                                         http_server: LocalServer) -> None:
    serve_robots(http_server, Response(b"oops", "text/plain", 500))
    http_server.routes["/a.html"] = Response(b"<html><body><p>text</p></body></html>")
    ctx = Context(redis_client, Settings(robots_obey=True, host_rate=0))
    with pytest.raises(RetryLater) as info:
        fetch_and_extract(ctx, page_task(http_server.url("/a.html")), final_attempt=False)
    assert info.value.reason == "robots_unavailable" and info.value.counted
    assert fetch_and_extract(ctx, page_task(http_server.url("/a.html")), final_attempt=True) is None
    assert [d.reason for d in DeadLetters(redis_client).list()] == ["robots_unavailable"]
    assert "/a.html" not in http_server.hits


def test_disallowed_page_is_dead_lettered_not_retried(redis_client: redis.Redis, http_server: LocalServer) -> None:
    serve_robots(http_server, Response(RULES, "text/plain"))
    ctx = Context(redis_client, Settings(robots_obey=True, host_rate=0))
    url = http_server.url("/s1/articles/b.html")
    assert fetch_and_extract(ctx, page_task(url), final_attempt=False) is None  # no RetryLater
    letters = DeadLetters(redis_client).list()
    assert [(d.reason, d.url) for d in letters] == [("robots_disallowed", url)]
    assert "/s1/articles/b.html" not in http_server.hits


@pytest.mark.slow
def test_worker_obeys_robots_for_pages_unless_the_feed_opts_out(private: tuple[str, redis.Redis],  # noqa: F811
                                                                 tmp_path: Path, http_server: LocalServer) -> None:
    url, r = private
    sites = build_many(http_server.url(""), 3, 2, seed=21)
    http_server.routes.update(all_routes(sites))
    agents: list[str] = []
    serve_robots(http_server, Response(RULES, "text/plain"), agents)
    open_, private_, closed = sites
    feeds = [Feed(url=open_.feed_url, name="open"), Feed(url=private_.feed_url, name="private"),
             Feed(url=closed.feed_url, name="closed", robots=False)]
    env = {"INGEST_ROBOTS_OBEY": "true", "INGEST_HOST_RATE": "0", "INGEST_HOST_CONCURRENCY": "2"}
    worker = spawn(["worker", "-Q", "poll,fetch,extract,publish", "-c", "2", "-n", "robots@%h", "-l", "INFO",
                    "--without-gossip", "--without-mingle"], url, tmp_path / "w.log", **env)
    try:
        run_id = send_polls(url, r, feeds)
        wait_for(lambda: runs.pending(r, run_id) == 0 and r.exists(runs.run_key(run_id)), 120, "the run")
        totals = runs.totals(r, run_id)
        got = {a["canonical_url"] for a in published(r)}
        expected = {s.article_url(a.slug) for s in (open_, closed) for a in s.articles}
        assert got == expected, totals
        letters = DeadLetters(r).list()
        assert sorted(d.url for d in letters) == sorted(private_.article_url(a.slug) for a in private_.articles)
        assert {d.reason for d in letters} == {"robots_disallowed"}
        assert not any(private_.article_path(a.slug) in http_server.hits for a in private_.articles)
        assert http_server.hits["/robots.txt"] == 1
        assert agents == [Settings().user_agent]
    finally:
        stop(worker)
