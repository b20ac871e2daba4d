"""Feed discovery: given a site's URL, the feeds it offers.

In this order: the URL itself when it already is a feed; else the feeds its page advertises with
``<link rel="alternate" type="application/rss+xml" ...>`` (RSS, Atom, RDF, JSON Feed), in page order, so the
site's main feed comes first; else whichever conventional paths (``/feed``, ``/rss``, ...) at the site's root
answer with something that parses as a feed. Every download goes through ``fetch``, so the SSRF guard, the
size caps and the timeouts apply as they do to polls. ``feed_links`` is the pure HTML -> links step.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
import lxml.html
import structlog
from lxml import etree

from worker.core.settings import Settings, get_settings
from worker.core.urls import InvalidURL, canonicalize
from worker.net.fetch import FetchError, FetchResult, decode_html, fetch, make_client
from worker.poll.parse import FeedError, parse_feed

__all__ = ["CONVENTIONAL_PATHS", "FEED_TYPES", "FoundFeed", "discover", "feed_links"]

log = structlog.get_logger(__name__)

# Advertised media types that name a feed. JSON Feed is listed for the user to see, but feedparser, which the
# poller uses, does not read it, so it is never added as a feed to poll.
FEED_TYPES: dict[str, bool] = {  # media type -> can the poller read it
    "application/rss+xml": True,
    "application/atom+xml": True,
    "application/rdf+xml": True,
    "application/feed+json": False,
}
CONVENTIONAL_PATHS = ("/feed", "/rss", "/rss.xml", "/atom.xml", "/feed.xml", "/index.xml")
MAX_LINKS = 100  # a page advertising more is not listing feeds for readers
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# A feed's first element, after an optional XML declaration, DOCTYPE, comments and processing instructions.
_FEED_START = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*(?:(?:<\?[^>]*\?>|<!--.*?-->|<!DOCTYPE[^>]*>)\s*)*<(?:[\w.-]+:)?(?:rss|feed|rdf)\b",
    re.IGNORECASE | re.DOTALL,
)

Source = Literal["self", "link", "guess"]


@dataclass(frozen=True)
class FoundFeed:
    url: str  # absolute; for a downloaded feed, after redirects
    title: str  # the link's title attribute, or the feed's own title; may be empty
    type: str  # media type, as advertised or served
    source: Source  # the URL itself, an advertised link, or a conventional path
    pollable: bool  # the poller can read it (RSS, Atom, RDF)


def feed_links(html: str, base_url: str) -> list[FoundFeed]:
    """The feeds a page advertises: ``<link rel="alternate">`` with a feed media type, hrefs resolved against
    the page's ``<base href>`` (itself resolved against ``base_url``), http(s) only, first listing wins."""
    try:
        doc = lxml.html.document_fromstring(html.encode("utf-8"),
                                            parser=lxml.html.HTMLParser(encoding="utf-8", no_network=True))
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):
        return []  # empty or not markup at all: nothing advertised
    base = base_url
    for node in doc.iter("base"):
        if node.get("href"):
            base = _join(base_url, node.get("href")) or base_url
            break
    found: list[FoundFeed] = []
    seen: set[str] = set()
    for link in doc.iter("link"):
        rel = (link.get("rel") or "").lower().split()
        media = (link.get("type") or "").split(";", 1)[0].strip().lower()
        href = (link.get("href") or "").strip()
        if "alternate" not in rel or media not in FEED_TYPES or not href:
            continue
        url = _join(base, href)
        if url is None:
            continue
        try:
            identity = canonicalize(url)
        except InvalidURL:
            continue
        if identity in seen:
            continue
        seen.add(identity)
        title = " ".join((link.get("title") or "").split())
        found.append(FoundFeed(url=url, title=title, type=media, source="link", pollable=FEED_TYPES[media]))
        if len(found) >= MAX_LINKS:
            break
    return found


def _join(base: str, href: str) -> str | None:
    try:
        url = urljoin(base, href)
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return urlunsplit(parts._replace(fragment=""))


def discover(url: str, *, settings: Settings | None = None, client: httpx.Client | None = None) -> list[FoundFeed]:
    """The feeds of the site at ``url`` (see the module docstring for the order). Raises ``FetchError`` when
    ``url`` itself cannot be downloaded; a conventional path that fails is simply not a feed."""
    settings = settings or get_settings()
    http = client or make_client(settings)
    try:
        return _discover(http, url, settings)
    finally:
        if client is None:
            http.close()


def _discover(http: httpx.Client, url: str, settings: Settings) -> list[FoundFeed]:
    try:
        page = fetch(url, kind="page", settings=settings, client=http)
    except FetchError as exc:
        if exc.reason != "content_type":
            raise
        # Served as a feed type, which a page download refuses: fetch it again under the feed rules.
        page = fetch(url, kind="feed", settings=settings, client=http)
    is_html = page.content_type in _HTML_TYPES
    if not is_html or _FEED_START.match(page.body[:4096]):
        itself = _as_feed(page, "self")
        if itself is not None:
            log.info("discover.itself_a_feed", url=page.url)
            return [itself]
    if is_html or not page.content_type:
        links = feed_links(decode_html(page), page.url)
        if links:
            log.info("discover.advertised", url=page.url, feeds=len(links))
            return links
    guesses = _guess(http, page.url, settings)
    log.info("discover.guessed", url=page.url, feeds=len(guesses), tried=len(CONVENTIONAL_PATHS))
    return guesses


def _as_feed(result: FetchResult, source: Source) -> FoundFeed | None:
    content_type = f"{result.content_type}; charset={result.charset}" if result.charset else result.content_type
    try:
        parsed = parse_feed(result.body, url=result.url, content_type=content_type or None)
    except FeedError as exc:
        log.debug("discover.not_a_feed", url=result.url, reason=exc.reason)
        return None
    return FoundFeed(url=result.url, title=parsed.title, type=result.content_type or "application/xml",
                     source=source, pollable=True)


def _guess(http: httpx.Client, page_url: str, settings: Settings) -> list[FoundFeed]:
    parts = urlsplit(page_url)
    found: list[FoundFeed] = []
    seen_urls: set[str] = set()
    seen_bodies: set[bytes] = set()  # /feed and /rss.xml are often one feed served twice
    for path in CONVENTIONAL_PATHS:
        candidate = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        try:
            result = fetch(candidate, kind="feed", settings=settings, client=http)
        except FetchError as exc:
            log.debug("discover.guess_failed", url=candidate, reason=exc.reason)
            continue
        digest = hashlib.sha256(result.body).digest()
        try:
            identity = canonicalize(result.url)
        except InvalidURL:
            continue
        if identity in seen_urls or digest in seen_bodies:
            continue
        feed = _as_feed(result, "guess")
        if feed is not None:
            seen_urls.add(identity)
            seen_bodies.add(digest)
            found.append(feed)
    return found
