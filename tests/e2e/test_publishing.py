"""What the README promises about publishing, seen from outside: feeds served by a local server, real worker
processes on a Redis of their own, and nothing read but the streams, the dead letters and the run's counters.

- the same story from two feeds: one original, the copy on ``articles.duplicates`` with ``duplicate_of``, or
  only counted with ``INGEST_DUPLICATE_POLICY=drop``;
- routing: a feed's ``route``, tag, language, site and feed rules, the default stream, ``INGEST_STREAM_MAXLEN``;
- a feed that failed (a poll-stage dead letter) replayed with ``ingest dead-letters replay``;
- one run with the production defaults together: robots.txt obeyed, per-host limits on, the cold-start hold.

No queue or task name appears here: work goes in through the same helpers as ``ingest run --once``
(``Stack.poll``) or beat, so these tests hold whatever the stages are called.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_faults import ROOT, Stack
from tests.e2e.test_scaling import spawn, stop
from tests.waiting import wait_until
from worker.core.settings import Settings
from worker.demo.server import LocalServer, Response
from worker.feeds.feedlist import Feed, save_feeds
from worker.publish.deadletter import DeadLetters

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

WORDS = ["council", "harbour", "budget", "vote", "river", "bridge", "school", "teachers", "market", "farmers",
         "weather", "storm", "museum", "library", "funding", "residents", "mayor", "police", "report", "station",
         "transport", "railway", "hospital", "nurses", "festival", "concert", "stadium", "league", "coach", "season"]


def story(title: str, seed: int, lang: str = "en") -> bytes:
    """An article page: a headline and five paragraphs of words chosen by ``seed`` (different seeds give texts
    that share no run of five words)."""
    paras = "".join(
        f"<p>{' '.join(WORDS[(seed * 11 + p * 7 + i * 3 + i * i * seed) % len(WORDS)] for i in range(50))}.</p>"
        for p in range(5))
    return (f"<!doctype html><html lang='{lang}'><head><meta charset='utf-8'><title>{title}</title></head>"
            f"<body><main><article><h1>{title}</h1>{paras}</article></main></body></html>").encode()


def feed_doc(links: list[tuple[str, str]]) -> bytes:
    items = "".join(f"<item><title>{title}</title><link>{link}</link><guid>{link}</guid></item>"
                    for title, link in links)
    return (f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>t</title>"
            f"<link>http://example.org/</link><description>d</description>{items}</channel></rss>").encode()


def serve(server: LocalServer, feed_path: str, pages: dict[str, bytes], *, titles: dict[str, str] | None = None
          ) -> str:
    """Serve ``pages`` (path -> HTML) and a feed at ``feed_path`` listing them; returns the feed's URL."""
    for path, html in pages.items():
        server.routes[path] = Response(html)
    links = [((titles or {}).get(path, path.rsplit("/", 1)[-1]), server.url(path)) for path in pages]
    server.routes[feed_path] = Response(feed_doc(links), "application/rss+xml")
    return server.url(feed_path)


@pytest.fixture
def second_host() -> Iterator[LocalServer]:
    """Another site: a server on 127.0.0.2, a host (and registered "site") of its own."""
    with LocalServer("127.0.0.2") as server:
        yield server


def urls(articles: list[dict[str, Any]]) -> set[str]:
    return {a["canonical_url"] for a in articles}


# --- the same story --------------------------------------------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.parametrize("policy", ["mark", "drop"])
def test_the_same_story_from_two_feeds_is_published_once(policy: str, tmp_path: Path, http_server: LocalServer,
                                                         second_host: LocalServer) -> None:
    """Two sites carry the same story (same headline and text) in their feeds, among their own stories. The
    main stream gets it once; with ``mark`` the other copy goes to ``articles.duplicates`` naming the
    original in ``duplicate_of``; with ``drop`` it is only counted."""
    headline = "Harbour council approves the new bridge budget"
    same = story(headline, 1)
    one = serve(http_server, "/a/feed.xml", {"/a/bridge.html": same, "/a/storm.html": story("Storm hits the coast", 2)},
                titles={"/a/bridge.html": headline})
    two = serve(second_host, "/b/feed.xml", {"/b/bridge-vote.html": same,
                                             "/b/league.html": story("League season opens", 3)},
                titles={"/b/bridge-vote.html": headline})
    s = Stack(tmp_path, env={"INGEST_DUPLICATE_POLICY": policy, "INGEST_CLEAN_HOLD_SECONDS": "0"})
    try:
        s.start_worker("same-story")
        counts = s.wait(s.poll([Feed(url=one, name="one"), Feed(url=two, name="two")]))
        main = s.published()
        copies = [http_server.url("/a/bridge.html"), second_host.url("/b/bridge-vote.html")]
        assert len(main) == 3 and len({a["id"] for a in main}) == 3, [a["canonical_url"] for a in main]
        [original] = [a for a in main if a["canonical_url"] in copies]
        assert urls(main) - {original["canonical_url"]} == {http_server.url("/a/storm.html"),
                                                            second_host.url("/b/league.html")}
        assert sum(v for k, v in counts.items() if k.startswith("duplicates:")) == 1, counts
        assert all("duplicate_of" not in a or a["duplicate_of"] is None for a in main)
        duplicates = s.published("articles.duplicates")
        if policy == "drop":
            assert duplicates == []
        else:
            [dup] = duplicates
            assert dup["canonical_url"] in copies and dup["canonical_url"] != original["canonical_url"]
            assert dup["duplicate_of"] == original["id"] and dup["duplicate_reason"], dup
            assert dup["title"] == original["title"] == headline
    finally:
        s.close()


# --- routing ---------------------------------------------------------------------------------------------------

ROUTES = [
    {"stream": "articles.sport", "tags": ["sport"]},
    {"stream": "articles.fr", "languages": ["fr"]},
    {"stream": "articles.second-site", "sites": ["127.0.0.2"]},
    {"stream": "articles.wire", "feeds": ["Wire"]},
    {"stream": "articles.sport-fr", "tags": ["sport"], "languages": ["fr"]},  # every condition must hold
]


@pytest.mark.cluster
def test_routing_rules_and_a_feeds_route(tmp_path: Path, http_server: LocalServer,
                                         second_host: LocalServer) -> None:
    """``INGEST_ROUTES`` and per-feed ``route``: an article goes to its feed's route plus every stream whose
    rule matches (tags of the feed, language of the article, site, feed name), and to ``articles`` only when
    nothing claims it."""
    feeds = [
        Feed(url=serve(http_server, "/sport.xml", {"/sport/match.html": story("Match report", 10)}),
             name="Sport desk", tags=("sport", "local")),
        Feed(url=serve(http_server, "/fr.xml", {"/fr/vote.html": story("Le vote du conseil", 11, lang="fr")}),
             name="Paris"),
        Feed(url=serve(http_server, "/frsport.xml", {"/fr/match.html": story("Le match", 12, lang="fr")}),
             name="Sport Paris", tags=("sport",)),
        Feed(url=serve(second_host, "/other.xml", {"/other/p.html": story("Station report", 13)}), name="Other"),
        Feed(url=serve(http_server, "/wire.xml", {"/wire/w.html": story("Wire story", 14)}), name="Wire",
             route="articles.priority"),
        Feed(url=serve(http_server, "/plain.xml", {"/plain/p.html": story("Museum funding", 15)}), name="Plain"),
    ]
    s = Stack(tmp_path, env={"INGEST_ROUTES": json.dumps(ROUTES), "INGEST_CLEAN_HOLD_SECONDS": "0"})
    try:
        s.start_worker("router")
        s.wait(s.poll(feeds))
        u = http_server.url
        expected = {
            "articles.sport": {u("/sport/match.html"), u("/fr/match.html")},
            "articles.fr": {u("/fr/vote.html"), u("/fr/match.html")},
            "articles.sport-fr": {u("/fr/match.html")},
            "articles.second-site": {second_host.url("/other/p.html")},
            "articles.priority": {u("/wire/w.html")},
            "articles.wire": {u("/wire/w.html")},
            "articles": {u("/plain/p.html")},
        }
        got = {stream: urls(s.published(stream)) for stream in expected}
        assert got == expected
        # each stream holds each article once
        assert all(len(s.published(stream)) == len(want) for stream, want in expected.items())
    finally:
        s.close()


def test_stream_maxlen_trims_every_stream(tmp_path: Path, http_server: LocalServer) -> None:
    """``INGEST_STREAM_MAXLEN`` caps each stream written (approximately, as ``XADD MAXLEN ~`` does: whole
    blocks of entries are dropped, so this Redis keeps blocks of two). Twelve articles published, the stream
    keeps the latest few, the oldest are gone."""
    pages = {f"/bulk/{i}.html": story(f"Bulk story number {i}", 20 + i) for i in range(12)}
    feed = Feed(url=serve(http_server, "/bulk.xml", pages), name="Bulk", route="articles.bulk")
    s = Stack(tmp_path, env={"INGEST_STREAM_MAXLEN": "4", "INGEST_CLEAN_HOLD_SECONDS": "0"})
    try:
        s.r.config_set("stream-node-max-entries", 2)
        s.start_worker("trimmer")
        counts = s.wait(s.poll([feed]))
        assert counts.get("published:articles.bulk") == 12, counts
        kept = s.published("articles.bulk")
        assert 4 <= len(kept) <= 6, len(kept)  # MAXLEN 4, plus at most one partly filled block
        assert s.r.xinfo_stream("articles.bulk")["entries-added"] == 12
        # the entries kept are the last ones written
        assert [e[0] for e in s.r.xrange("articles.bulk")] == [e[0] for e in s.r.xrevrange("articles.bulk")][::-1]
        assert len(s.r.xrange("articles.bulk", min="0-0", max="+")) == len(kept)
    finally:
        s.close()


# --- replaying a failed feed ----------------------------------------------------------------------------------


def test_a_failed_feed_is_replayed_from_its_dead_letter(tmp_path: Path, http_server: LocalServer) -> None:
    """A feed that answers 503 is polled by beat, fails and is dead-lettered at the poll stage; its backoff
    (an hour here) keeps it from being polled again. Once the site is back, ``ingest dead-letters replay``
    makes it due at once: beat polls it, its articles are published, and the dead letter is gone."""
    pages = {f"/back/{i}.html": story(f"Back online story {i}", 40 + i) for i in range(2)}
    feed_url = serve(http_server, "/back.xml", pages)
    good_feed = http_server.routes["/back.xml"]
    http_server.routes["/back.xml"] = Response(b"down for maintenance", "text/plain", 503)
    feeds_file = tmp_path / "feeds.yaml"
    save_feeds(feeds_file, [Feed(url=feed_url, name="back")])
    env = {"INGEST_FEEDS": str(feeds_file), "INGEST_DISPATCH_EVERY": "1", "INGEST_BACKOFF_BASE": "3600",
           "INGEST_CLEAN_HOLD_SECONDS": "0"}
    s = Stack(tmp_path, env=env)
    beat = None
    try:
        s.start_worker("replayer")
        beat = spawn(["beat", "-l", "INFO", "-s", str(tmp_path / "beat-schedule")], s.url, tmp_path / "beat.log",
                     **s.env)
        letters = wait_until(lambda: DeadLetters(s.r).list(), "the failed poll's dead letter",
                             details=lambda: s.log_tail("replayer"))
        assert [(dl.stage, dl.url) for dl in letters] == [("poll", feed_url)], [dl.as_dict() for dl in letters]
        assert s.published() == []

        http_server.routes["/back.xml"] = good_feed
        replayed = subprocess.run([sys.executable, "-m", "worker.cli", "dead-letters", "replay"], cwd=ROOT,
                                  env=os.environ | s.env, capture_output=True, text=True, timeout=60)
        assert replayed.returncode == 0 and "replayed 1" in replayed.stdout, replayed.stderr[-2000:]
        wait_until(lambda: len(s.published()) == 2, "the replayed feed's articles",
                   details=lambda: s.log_tail("replayer"))
        assert urls(s.published()) == {http_server.url(p) for p in pages}
        assert DeadLetters(s.r).list() == []
    finally:
        if beat is not None:
            stop(beat)
        s.close()


# --- the production defaults together ------------------------------------------------------------------------


class Watched:
    """Article pages that record how many requests are in flight at once, and answer after 2.5 s: longer than
    the one-second spacing of the default rate, so only the concurrency limit keeps a third request out."""

    def __init__(self, server: LocalServer, pages: dict[str, bytes]) -> None:
        self.lock = threading.Lock()
        self.inflight = self.peak = 0
        self.done = threading.Event()
        for path, html in pages.items():
            server.routes[path] = self.route(html)  # type: ignore[assignment]

    def route(self, html: bytes) -> Any:
        def answer(handler: BaseHTTPRequestHandler) -> None:
            with self.lock:
                self.inflight += 1
                self.peak = max(self.peak, self.inflight)
            try:
                self.done.wait(2.5)  # never set: a pause that lets other requests arrive meanwhile
                handler.send_response(200)
                handler.send_header("Content-Type", "text/html; charset=utf-8")
                handler.send_header("Content-Length", str(len(html)))
                handler.end_headers()
                handler.wfile.write(html)
            finally:
                with self.lock:
                    self.inflight -= 1
        return answer


PRODUCTION = ("host_concurrency", "host_rate", "host_wait_max", "robots_obey", "clean_hold_seconds",
              "clean_min_pages", "min_interval", "duplicate_policy", "retry_after_scope")


def test_one_run_with_the_production_defaults(tmp_path: Path, http_server: LocalServer) -> None:
    """Every politeness and cleaning setting at its default, as a deployment gets them (the suite's relaxed
    values are put back): robots.txt obeyed, two requests at a time and one a second per host, the cold-start
    hold, and the SSRF guard on, with the test site's address allowed the way a user allows an internal mirror
    (``INGEST_ALLOWED_NETWORKS=127.0.0.1/32``). Everything allowed is published once, the page robots.txt
    forbids is dead-lettered without being requested, and the host never saw more than two requests at once,
    however many worker processes."""
    defaults = Settings.model_fields
    env = {f"INGEST_{name.upper()}": str(defaults[name].default).lower() if isinstance(defaults[name].default, bool)
           else str(defaults[name].default) for name in PRODUCTION}
    assert env["INGEST_ROBOTS_OBEY"] == "true" and env["INGEST_HOST_CONCURRENCY"] == "2"
    pages = {f"/news/{i}.html": story(f"Town news item {i}", 60 + i) for i in range(6)}
    pages["/private/memo.html"] = story("Internal memo", 70)
    feed_url = serve(http_server, "/news.xml", pages)
    watched = Watched(http_server, pages)
    http_server.routes["/robots.txt"] = Response(b"User-agent: *\nDisallow: /private/\n", "text/plain")
    s = Stack(tmp_path, env=env | {"INGEST_ALLOW_PRIVATE_NETWORKS": "false", "INGEST_ALLOWED_NETWORKS": "127.0.0.1/32"})
    try:
        s.start_worker("production", concurrency=3)
        counts = s.wait(s.poll([Feed(url=feed_url, name="news")]), timeout=180)
        published = s.published()
        assert urls(published) == {http_server.url(p) for p in pages if p.startswith("/news/")}, counts
        assert len(published) == 6
        assert [(dl.reason, dl.url) for dl in DeadLetters(s.r).list()] == [
            ("robots_disallowed", http_server.url("/private/memo.html"))]
        assert http_server.hits.get("/private/memo.html") is None
        assert http_server.hits["/robots.txt"] == 1
        assert 1 <= watched.peak <= 2, watched.peak
    finally:
        s.close()
