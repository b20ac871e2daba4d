"""Feed discovery against a real local server: advertised links (relative, absolute, after a redirect),
conventional paths when nothing is advertised, a URL that already is a feed, failures, the SSRF guard, and
`ingest feeds discover --add`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from worker.core.settings import Settings
from worker.demo.server import LocalServer, Response
from worker.feeds.discover import CONVENTIONAL_PATHS, FoundFeed, discover, feed_links
from worker.feeds.feedlist import Feed, load_feeds, save_feeds
from worker.net.fetch import FetchError

RSS = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Harbour Gazette</title><link>http://gazette.test/</link>
<item><title>Ferry timetable changes</title><link>http://gazette.test/ferry</link></item>
</channel></rss>"""
ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Harbour Gazette (Atom)</title><id>urn:gazette</id>
<updated>2026-11-01T08:00:00Z</updated>
<entry><title>Lighthouse repainted</title><id>urn:gazette:1</id><link href="http://gazette.test/light"/>
<updated>2026-11-01T08:00:00Z</updated></entry></feed>"""


def page(head: str, body: str = "<p>Welcome to the harbour.</p>") -> Response:
    return Response(f"<!doctype html><html><head><title>Gazette</title>{head}</head><body>{body}</body></html>"
                    .encode())


HOME_HEAD = """
<link rel="stylesheet" href="/style.css">
<link rel="alternate" hreflang="fr" href="/fr/">
<link rel="alternate" type="application/rss+xml" title="Gazette: all stories" href="feeds/all.xml">
<link rel="Alternate" type="application/atom+xml; charset=utf-8" title="  Gazette
    (Atom) " href="{absolute}">
<link rel="alternate" type="application/feed+json" title="Gazette JSON" href="/feed.json">
<link rel="alternate" type="application/rss+xml" title="same feed again" href="./feeds/all.xml#latest">
<link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">
<link rel="alternate" type="application/rss+xml" href="">
<link rel="alternate" type="application/json" href="/wp-json/wp/v2/pages/1">
"""


# --- the pure HTML -> links step --------------------------------------------------------------------------------


def test_feed_links_resolves_filters_and_dedupes() -> None:
    html = page(HOME_HEAD.format(absolute="https://cdn.example/gazette/atom")).body.decode()
    assert feed_links(html, "http://gazette.test/news/index.html") == [
        FoundFeed("http://gazette.test/news/feeds/all.xml", "Gazette: all stories", "application/rss+xml", "link",
                  True),
        FoundFeed("https://cdn.example/gazette/atom", "Gazette (Atom)", "application/atom+xml", "link", True),
        FoundFeed("http://gazette.test/feed.json", "Gazette JSON", "application/feed+json", "link", False),
    ]


def test_feed_links_honours_base_href_and_tolerates_junk() -> None:
    html = '<html><head><base href="/blog/"><link rel="alternate" type="application/rss+xml" href="rss"></head>'
    assert [f.url for f in feed_links(html, "http://site.test/a/b")] == ["http://site.test/blog/rss"]
    assert feed_links("", "http://site.test/") == []
    assert feed_links("just some text", "http://site.test/") == []
    assert feed_links("<html><head></head><body>no links</body></html>", "http://site.test/") == []


# --- discovery over HTTP ------------------------------------------------------------------------------------------


def test_advertised_feeds_are_found_in_page_order(http_server: LocalServer) -> None:
    http_server.routes["/"] = page(HOME_HEAD.format(absolute=http_server.url("/atom")))
    found = discover(http_server.url("/"))
    assert [(f.url, f.title, f.source, f.pollable) for f in found] == [
        (http_server.url("/feeds/all.xml"), "Gazette: all stories", "link", True),
        (http_server.url("/atom"), "Gazette (Atom)", "link", True),
        (http_server.url("/feed.json"), "Gazette JSON", "link", False),
    ]
    assert http_server.hits == {"/": 1}  # advertised feeds are trusted: nothing guessed, nothing else fetched


def test_relative_links_resolve_against_the_page_after_redirects(http_server: LocalServer) -> None:
    http_server.routes["/"] = Response(b"", status=301, headers={"Location": "/en/home/"})
    http_server.routes["/en/home/"] = page('<link rel="alternate" type="application/rss+xml" href="rss.xml">')
    assert [f.url for f in discover(http_server.url("/"))] == [http_server.url("/en/home/rss.xml")]


def test_without_links_the_conventional_paths_that_are_feeds(http_server: LocalServer) -> None:
    http_server.routes["/"] = page("")
    http_server.routes["/feed"] = page("", "<p>Our feeds page: subscribe!</p>")  # a page, not a feed
    http_server.routes["/feed.xml"] = Response(RSS, "application/rss+xml")
    http_server.routes["/atom.xml"] = Response(ATOM, "text/xml")  # mislabelled, still a feed
    http_server.routes["/rss.xml"] = Response(b"", status=301, headers={"Location": "/feed.xml"})  # same feed
    found = discover(http_server.url("/"))
    assert [(f.url, f.title, f.source) for f in found] == [
        (http_server.url("/feed.xml"), "Harbour Gazette", "guess"),  # by way of /rss.xml, then not again
        (http_server.url("/atom.xml"), "Harbour Gazette (Atom)", "guess"),
    ]
    assert all(http_server.hits.get(path) for path in CONVENTIONAL_PATHS)


def test_guesses_are_made_at_the_site_root(http_server: LocalServer) -> None:
    http_server.routes["/section/politics"] = page("")
    http_server.routes["/index.xml"] = Response(RSS, "application/xml")
    assert [f.url for f in discover(http_server.url("/section/politics"))] == [http_server.url("/index.xml")]


def test_a_site_with_no_feed_at_all(http_server: LocalServer) -> None:
    http_server.routes["/"] = page("")
    assert discover(http_server.url("/")) == []


@pytest.mark.parametrize("content_type", ["application/rss+xml", "text/xml", "text/html; charset=utf-8"])
def test_a_url_that_is_itself_a_feed(http_server: LocalServer, content_type: str) -> None:
    http_server.routes["/rss"] = Response(RSS, content_type)
    assert discover(http_server.url("/rss")) == [
        FoundFeed(http_server.url("/rss"), "Harbour Gazette", content_type.split(";")[0], "self", True)]
    # a body served under a feed type is refused as a page, then fetched again under the feed rules
    assert http_server.hits == {"/rss": 1 if content_type.startswith("text/html") else 2}


def test_an_unreachable_site_raises_the_fetch_error(http_server: LocalServer) -> None:
    with pytest.raises(FetchError) as caught:
        discover(http_server.url("/missing"))
    assert caught.value.reason == "http_4xx" and caught.value.status == 404
    assert http_server.hits == {"/missing": 1}  # nothing guessed on a site that is not there


def test_discovery_goes_through_the_ssrf_guard(http_server: LocalServer) -> None:
    http_server.routes["/"] = page("")
    http_server.routes["/feed.xml"] = Response(RSS, "application/rss+xml")
    with pytest.raises(FetchError) as caught:
        discover(http_server.url("/"), settings=Settings(allow_private_networks=False))
    assert caught.value.reason == "private_address" and http_server.hits == {}


# --- the command line ---------------------------------------------------------------------------------------------


def ingest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, timeout=120,
                          env=os.environ | {"INGEST_LOG_FORMAT": "json"})


def test_cli_discover_lists_and_adds(http_server: LocalServer, tmp_path: Path) -> None:
    http_server.routes["/"] = page(HOME_HEAD.format(absolute=http_server.url("/atom")))
    feeds = tmp_path / "feeds.yaml"
    save_feeds(feeds, [])

    listed = ingest("feeds", "discover", http_server.url("/"), "--feeds", str(feeds))
    assert listed.returncode == 0, listed.stderr
    lines = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [line[:4] for line in lines] == [
        [http_server.url("/feeds/all.xml"), "application/rss+xml", "link", "Gazette: all stories"],
        [http_server.url("/atom"), "application/atom+xml", "link", "Gazette (Atom)"],
        [http_server.url("/feed.json"), "application/feed+json", "link", "Gazette JSON"],
    ]
    assert "not pollable" in lines[2][4] and load_feeds(feeds) == []  # listing alone changes nothing

    added = ingest("feeds", "discover", http_server.url("/"), "--add", "--tag", "harbour", "--feeds", str(feeds))
    assert added.returncode == 0, added.stderr
    first = Feed(url=http_server.url("/feeds/all.xml"), name="Gazette: all stories", tags=("harbour",))
    assert load_feeds(feeds) == [first]

    every = ingest("feeds", "discover", http_server.url("/"), "--all", "--feeds", str(feeds))
    assert every.returncode == 0, every.stderr
    assert f"already listed: {first.url}" in every.stdout
    assert load_feeds(feeds) == [first, Feed(url=http_server.url("/atom"), name="Gazette (Atom)")]  # no JSON Feed


def test_cli_discover_failures(http_server: LocalServer, tmp_path: Path) -> None:
    http_server.routes["/"] = page("")
    missing = ingest("feeds", "discover", http_server.url("/missing"), "--feeds", str(tmp_path / "f.yaml"))
    assert missing.returncode == 2 and "http_4xx" in missing.stderr and "Traceback" not in missing.stderr
    nothing = ingest("feeds", "discover", http_server.url("/"), "--add", "--feeds", str(tmp_path / "f.yaml"))
    assert nothing.returncode == 1 and "no feeds found" in nothing.stderr and nothing.stdout == ""
    assert not (tmp_path / "f.yaml").exists()
