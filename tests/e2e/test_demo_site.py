"""The generated demo site: valid routes and feed, real 304s, and pages that carry the boilerplate the
cleaner exists for (it survives trafilatura) while distinct articles stay distinct."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime

import feedparser
import pytest
import trafilatura
from lxml import html as lxml_html

from worker.demo.serve import serve_demo
from worker.demo.server import LocalServer, Response, Route
from worker.demo.site import DemoSite, add_article, all_routes, build_many, build_site

BASE = "http://127.0.0.1:8000"
_WORD = re.compile(r"\w+")


def shingles(text: str, size: int = 5) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.casefold())
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


def jaccard(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def extract(body: bytes) -> str:
    """Trafilatura with the worker's options (worker.extract.page), text only."""
    return trafilatura.extract(body, include_comments=False, include_tables=True, include_links=False,
                               include_images=False) or ""


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as exc:  # urllib raises on 304 as on any non-2xx
        return exc.code, dict(exc.headers.items()), exc.read()


def page(site: DemoSite, slug: str) -> bytes:
    return site.routes[site.article_path(slug)].body


@pytest.fixture(scope="module")
def site() -> DemoSite:
    return build_site(BASE, n_articles=12, seed=0)


# --- structure ------------------------------------------------------------------------------------------------


def test_routes_are_valid_pages(site: DemoSite) -> None:
    assert site.feed_path == "/feed.xml" and len(site.articles) == 12
    assert set(site.routes) == {"/feed.xml", "/"} | {f"/articles/{a.slug}.html" for a in site.articles}
    for path, resp in site.routes.items():
        assert isinstance(resp, Response) and resp.status == 200 and resp.body
        assert path.startswith("/")
    for art in site.articles:
        doc = lxml_html.fromstring(page(site, art.slug))
        meta = {m.get("property") or m.get("name"): m.get("content") for m in doc.iter("meta")}
        assert doc.get("lang") == "en"
        assert meta["og:title"] == art.title and meta["author"] == art.author
        assert meta["og:site_name"] == "The Harbour Gazette"
        assert datetime.fromisoformat(meta["article:published_time"]) == art.published
        assert doc.xpath("//link[@rel='canonical']/@href") == [site.article_url(art.slug)]
        assert doc.xpath("//h1/text()") == [art.title]
        container = doc.xpath("//article")[0].text_content()
        # The CMS furniture sits inside the article container, which is the point of the fixture.
        assert "Last updated at" in container and "Follow us on WeChat" in container
        assert "Share this article" in container and "Related" in container
        assert doc.xpath("//header//nav") and doc.xpath("//footer") and doc.xpath("//*[@id='cookie-banner']")
        # Every link to this site resolves to a route (nav links are fragments of the home page).
        for href in doc.xpath("//a/@href"):
            if href.startswith(BASE):
                assert href[len(BASE):].split("#")[0] in site.routes, href


def test_articles_are_sized_dated_and_unique(site: DemoSite) -> None:
    assert [a.published for a in site.articles] == sorted(a.published for a in site.articles)
    assert all(a.published.tzinfo is UTC for a in site.articles)
    assert len({a.slug for a in site.articles}) == len({a.title for a in site.articles}) == 12
    for art in site.articles:
        assert 150 <= len(_WORD.findall(site.expected_text(art.slug))) <= 500, art.slug
        assert len(art.paragraphs) >= 3 and art.author and art.tags
        assert site.expected_text(art.slug) == "\n".join(art.paragraphs)


def test_only_background_paragraphs_are_shared() -> None:
    big = build_site(BASE, n_articles=50, seed=4)
    paragraphs = Counter(p for a in big.articles for p in a.paragraphs)
    shared = {p for p, n in paragraphs.items() if n > 1}
    assert shared and all(p.startswith(("The harbour at", "The ")) and "18" in p for p in shared)
    for small_seed in range(5):  # even small sites have the shared background in two articles
        small = build_site(BASE, n_articles=6, seed=small_seed)
        assert max(Counter(p for a in small.articles for p in a.paragraphs).values()) >= 2
    sentences = Counter(s for a in big.articles for p in a.paragraphs if p not in shared
                        for s in re.split(r"(?<=[.!?])\s+|(?<=[.!?][”»“])\s+", p))
    assert sentences.most_common(1)[0][1] == 1


def test_deterministic_per_seed() -> None:
    a, b = build_site(BASE, n_articles=6, seed=9), build_site(BASE, n_articles=6, seed=9)
    assert {k: v.body for k, v in a.routes.items()} == {k: v.body for k, v in b.routes.items()}
    c = build_site(BASE, n_articles=6, seed=10)
    assert {x.title for x in a.articles}.isdisjoint({x.title for x in c.articles})


# --- the feed ---------------------------------------------------------------------------------------------------


def test_feed_parses_and_links_to_the_pages(site: DemoSite) -> None:
    resp = site.routes[site.feed_path]
    assert resp.content_type.startswith("application/rss+xml")
    assert resp.headers["ETag"].startswith('"') and resp.headers["Last-Modified"].endswith("GMT")
    parsed = feedparser.parse(resp.body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "rss20" and parsed.feed.title == "The Harbour Gazette"
    assert len(parsed.entries) == 12
    newest_first = sorted(site.articles, key=lambda a: a.published, reverse=True)
    for entry, art in zip(parsed.entries, newest_first, strict=True):
        assert entry.link == f"{BASE}/articles/{art.slug}.html" == entry.id
        assert entry.title == art.title and entry.author == art.author
        year, month, day, hour, minute, second = entry.published_parsed[:6]
        assert datetime(year, month, day, hour, minute, second, tzinfo=UTC) == art.published
        assert entry.summary and art.paragraphs[0].startswith(entry.summary)


def test_conditional_get_and_a_new_entry_via_the_real_server(http_server: LocalServer) -> None:
    site = build_site(http_server.url(""), n_articles=4, seed=2)
    http_server.routes.update(site.routes)
    feed_url = http_server.url(site.feed_path)
    status, headers, body = get(feed_url)
    assert status == 200 and body == site.routes[site.feed_path].body
    etag, lastmod = headers["ETag"], headers["Last-Modified"]
    assert get(feed_url, {"If-None-Match": etag})[0] == 304
    assert get(feed_url, {"If-Modified-Since": lastmod})[0] == 304
    for entry in feedparser.parse(body).entries:
        assert get(entry.link)[0] == 200

    art = add_article(site, routes=http_server.routes)
    status, headers, body = get(feed_url, {"If-None-Match": etag, "If-Modified-Since": lastmod})
    assert status == 200 and headers["ETag"] != etag and headers["Last-Modified"] != lastmod
    entries = feedparser.parse(body).entries
    assert len(entries) == 5 and entries[0].title == art.title
    status, _, page_body = get(entries[0].link)
    assert status == 200 and art.paragraphs[0].encode() in page_body
    assert get(feed_url, {"If-None-Match": headers["ETag"]})[0] == 304


def test_add_article_options_and_feed_limit() -> None:
    site = build_site(BASE, n_articles=3, seed=5, feed_limit=3)
    when = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    art = add_article(site, title="A brand new story", paragraphs=["One line.", "Two lines."], published=when)
    assert site.articles[-1] is art and art.slug == "a-brand-new-story" and art.published == when
    assert site.expected_text(art.slug) == "One line.\nTwo lines."
    entries = feedparser.parse(site.routes[site.feed_path].body).entries
    assert len(entries) == 3 and entries[0].title == "A brand new story"
    assert len([p for p in site.routes if p.startswith("/articles/")]) == 4
    again = add_article(site, topic="rail")
    assert again.topic == "rail" and again.published > when


def test_prefix_and_add_article_by_seed_and_new_base_url() -> None:
    site = build_site(BASE + "/", n_articles=4, seed=3, prefix="/gazette")
    assert site.base_url == BASE and site.feed_path == "/gazette/feed.xml"
    assert site.site_name == "The Harbour Gazette"
    assert all(p.startswith("/gazette/") for p in site.routes)
    links = [e.link for e in feedparser.parse(site.routes[site.feed_path].body).entries]
    assert links and all(link.startswith(f"{BASE}/gazette/articles/") for link in links)
    # A seeded addition is the same on equal sites, whatever the site's own sequence did before.
    twin = build_site(BASE, n_articles=4, seed=3, prefix="/gazette")
    add_article(twin)
    assert add_article(site, seed=42).title == add_article(twin, seed=42).title
    # Moving the site re-renders every absolute link; the served routes follow.
    served: dict[str, Route] = dict(site.routes)
    old_etag = site.routes[site.feed_path].headers["ETag"]
    art = add_article(site, "http://127.0.0.1:9999", routes=served)
    assert site.base_url == "http://127.0.0.1:9999" and site.routes[site.feed_path].headers["ETag"] != old_etag
    assert BASE.encode() not in b"".join(r.body for r in site.routes.values())
    assert served[site.article_path(art.slug)] is site.routes[site.article_path(art.slug)]
    assert served[site.feed_path] is site.routes[site.feed_path]
    entries = feedparser.parse(site.routes[site.feed_path].body).entries
    assert entries[0].link == f"http://127.0.0.1:9999/gazette/articles/{art.slug}.html"


# --- extraction: the problem this fixture demonstrates ----------------------------------------------------------


def test_trafilatura_keeps_the_article_and_the_boilerplate(site: DemoSite) -> None:
    titles = {a.title for a in site.articles}
    with_headlines = 0
    for art in site.articles:
        text = extract(page(site, art.slug))
        for paragraph in art.paragraphs:
            assert paragraph in text
        lines = text.split("\n")
        assert any(ln.startswith("Last updated at ") for ln in lines)
        assert "Follow us on WeChat: scan the QR code to get our top stories every morning." in lines
        # Other articles' headlines, bare or as list items, some twice.
        headlines = Counter(ln.removeprefix("- ") for ln in lines if ln.removeprefix("- ") in titles - {art.title})
        with_headlines += bool(headlines) and max(headlines.values()) >= 2
        assert len(headlines) >= 4
        assert set(site.boilerplate_lines(art.slug)) & set(lines)
        assert "Cookie" not in text and "Sign up for our free newsletter" not in text  # outside the container
    assert with_headlines == len(site.articles)


def test_last_updated_digits_vary(site: DemoSite) -> None:
    stamps = {site.boilerplate_lines(a.slug)[0] for a in site.articles}
    assert len(stamps) == len(site.articles)
    assert all(re.fullmatch(r"Last updated at \d\dh\d\d on \d\d/\d\d", s) for s in stamps)


def test_distinct_articles_are_not_near_duplicates(site: DemoSite) -> None:
    extracted = [shingles(extract(page(site, a.slug))) for a in site.articles]
    worst = max(jaccard(a, b) for a, b in itertools.combinations(extracted, 2))
    assert worst < 0.3, worst
    big = build_site(BASE, n_articles=60, seed=7)
    texts = [shingles(big.expected_text(a.slug)) for a in big.articles]
    worst = max(jaccard(a, b) for a, b in itertools.combinations(texts, 2))
    assert worst < 0.3, worst


# --- languages --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("language", "updated", "wechat"), [
    ("fr", r"Mis à jour à \d\dh\d\d le \d\d/\d\d", "Suivez-nous sur WeChat"),
    ("de", r"Zuletzt aktualisiert um \d\d\.\d\d Uhr am \d\d\.\d\d\.", "Folgen Sie uns auf WeChat"),
])
def test_other_languages_have_the_same_structure(language: str, updated: str, wechat: str) -> None:
    site = build_site(BASE, n_articles=8, seed=1, language=language)
    assert site.site_name != "The Harbour Gazette"
    parsed = feedparser.parse(site.routes[site.feed_path].body)
    assert not parsed.bozo and parsed.feed.language == language and len(parsed.entries) == 8
    for art in site.articles:
        body = page(site, art.slug)
        assert f'<html lang="{language}">'.encode() in body
        text = extract(body)
        assert all(p in text for p in art.paragraphs)
        assert re.search(updated, text) and wechat in text
        assert 150 <= len(_WORD.findall(site.expected_text(art.slug))) <= 500
    # trafilatura leaves Document.language unset; the worker falls back to <html lang> and the feed's.
    doc = trafilatura.bare_extraction(page(site, site.articles[0].slug), with_metadata=True)
    assert isinstance(doc, trafilatura.settings.Document)
    assert doc.title == site.articles[0].title and doc.sitename == site.site_name


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        build_site(BASE, language="xx")


# --- scale ------------------------------------------------------------------------------------------------------


def test_build_many_is_distinct_and_prefixed() -> None:
    # its speed (about 1 s of CPU for these 1 000 pages) is a figure of ops/bench/demo_site.py
    sites = build_many(BASE, n_sites=20, articles_per_site=50, seed=0)
    assert [s.feed_path for s in sites] == [f"/s{i}/feed.xml" for i in range(20)]
    routes = all_routes(sites)
    assert len(routes) == sum(len(s.routes) for s in sites) == 20 * 52
    assert len({s.site_name for s in sites}) == 20 and len({s.town for s in sites}) == 20
    titles = [a.title for s in sites for a in s.articles]
    assert len(set(titles)) == len(titles) == 1000
    for s in sites[:3]:
        entries = feedparser.parse(s.routes[s.feed_path].body).entries
        assert len(entries) == 50 and all(e.link.startswith(f"{BASE}/s{sites.index(s)}/articles/") for e in entries)
    # Across sites too, distinct articles are not near-duplicates.
    sample = [shingles(s.expected_text(a.slug)) for s in sites[:10] for a in s.articles[:6]]
    worst = max(jaccard(a, b) for a, b in itertools.combinations(sample, 2))
    assert worst < 0.3, worst


def test_build_many_can_spread_sites_over_hosts_and_languages() -> None:
    sites = build_many(lambda i: f"http://127.0.0.{i + 1}:8000", 3, 4, seed=1, language=("en", "fr"))
    assert [s.base_url for s in sites] == [f"http://127.0.0.{i}:8000" for i in (1, 2, 3)]
    assert [s.language for s in sites] == ["en", "fr", "en"]
    assert sites[2].feed_url == "http://127.0.0.3:8000/s2/feed.xml"


# --- serving ----------------------------------------------------------------------------------------------------


def test_serve_demo_serves_the_feed_and_pages() -> None:
    server, site = serve_demo(n_articles=5)
    try:
        status, _, body = get(server.url(site.feed_path))
        entries = feedparser.parse(body).entries
        assert status == 200 and len(entries) == 5
        assert get(entries[-1].link)[0] == 200
    finally:
        server.stop()


def test_serve_module_prints_the_feed_url() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "worker.demo.serve", "--articles", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/feed\.xml", url), url
        status, _, body = get(url)
        assert status == 200 and len(feedparser.parse(body).entries) == 3
    finally:
        proc.terminate()
        proc.wait(10)
