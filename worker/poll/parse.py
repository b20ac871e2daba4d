"""Feed bytes -> entries with absolute http(s) links, plain-text titles and summaries, and UTC dates.

feedparser does the hard part (RSS/Atom/RDF dialects, broken XML, encodings declared wrong). It is only ever
given a byte stream: handed a ``str`` it fetches URLs, and handed ``bytes`` it first tries ``open()`` on
them, so a feed whose body is ``/etc/passwd`` would read that file.
"""

from __future__ import annotations

import io
import re
import time
from calendar import timegm
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser

__all__ = ["Entry", "FeedError", "ParsedFeed", "html_to_text", "parse_feed"]

MAX_LINK_LENGTH = 4096
MAX_TTL_SECONDS = 7 * 86400.0
_PERIODS = {"hourly": 3600.0, "daily": 86400.0, "weekly": 7 * 86400.0, "monthly": 30 * 86400.0,
            "yearly": 365 * 86400.0}
_FEED_ROOT = re.compile(rb"<(?:[a-z0-9_-]+:)?(?:rss|feed|rdf)\b", re.IGNORECASE)
# feedparser keeps only the last <hour>/<day> of these, so they are read from the bytes (bounded patterns)
_SKIP_HOURS = re.compile(rb"<skipHours\b[^>]{0,200}>(.{0,4000}?)</skipHours>", re.IGNORECASE | re.DOTALL)
_SKIP_DAYS = re.compile(rb"<skipDays\b[^>]{0,200}>(.{0,2000}?)</skipDays>", re.IGNORECASE | re.DOTALL)
_HOUR = re.compile(rb"<hour>\s*(\d{1,2})\s*</hour>", re.IGNORECASE)
_DAY = re.compile(rb"<day>\s*([A-Za-z]{6,9})\s*</day>", re.IGNORECASE)
_DAY_NAMES = frozenset({"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"})


@dataclass(frozen=True)
class Entry:
    guid: str | None
    link: str  # absolute, http(s)
    title: str
    summary: str  # plain text
    published: str | None  # ISO 8601, UTC


@dataclass(frozen=True)
class ParsedFeed:
    title: str
    entries: list[Entry]
    ttl_seconds: float | None
    skipped: list[tuple[str, str]]  # (what, reason) for each dropped entry
    warning: str | None  # what feedparser recovered from, if anything
    skip_hours: frozenset[int] = frozenset()  # RSS <skipHours>: UTC hours not to poll in
    skip_days: frozenset[str] = frozenset()  # RSS <skipDays>: lower-case English day names
    hub: str | None = None  # WebSub hub advertised by <link rel="hub"> / <atom:link rel="hub">
    self_url: str | None = None  # the feed's own URL by rel="self" (the WebSub topic)


class FeedError(Exception):
    """The body is no usable feed; ``reason`` is "empty_body", "not_a_feed" or "malformed"."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_feed(body: bytes, *, url: str, content_type: str | None = None) -> ParsedFeed:
    """Parse a downloaded feed. ``url`` (the final URL) is the base for relative links; a charset in
    ``content_type`` (``"text/xml; charset=iso-8859-1"``) overrides the XML declaration, as RFC 7303 says."""
    if not body.strip(b" \t\r\n\x00\xef\xbb\xbf\xfe\xff"):
        raise FeedError("empty_body", "the feed body is empty")
    parsed = feedparser.parse(io.BytesIO(body), response_headers=_headers(url, content_type),
                              # only plain text is kept (html_to_text), and links are resolved by _link: the
                              # sanitiser and the URI rewriting of embedded HTML would be pure cost
                              resolve_relative_uris=False, sanitize_html=False)
    problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
    warning = f"{type(problem).__name__}: {problem}"[:500] if problem is not None else None
    feed_info = parsed.get("feed", {})
    if not parsed.get("version"):
        if parsed.entries and any(e.get("link") for e in parsed.entries):
            pass  # an unknown dialect that still yielded linked entries is worth keeping
        elif _FEED_ROOT.search(body[:2048].replace(b"\x00", b"")):
            raise FeedError("malformed", f"feed could not be parsed: {warning or 'unknown format'}")
        else:
            raise FeedError("not_a_feed", f"not an RSS/Atom feed: {warning or 'unknown format'}")
    elif problem is not None and not parsed.entries and not feed_info.get("title"):
        # A known root element and nothing else: truncated or broken before the first item.
        raise FeedError("malformed", f"feed could not be parsed: {warning}")

    entries: list[Entry] = []
    skipped: list[tuple[str, str]] = []
    guids: set[str] = set()
    for index, raw in enumerate(parsed.entries):
        guid = _clean(raw.get("id")) or None
        what = guid or _clean(raw.get("link")) or _clean(raw.get("title")) or f"entry #{index}"
        if guid is not None and guid in guids:
            skipped.append((what, "duplicate_guid"))
            continue
        link, reason = _link(raw, url)
        if link is not None and raw.get("guidislink") and raw.get("id") == link and not _written_in(body, link):
            # feedparser promotes a bare <guid>abc123</guid> to a link by resolving it against the feed URL;
            # only a guid written as an absolute URL may stand in for a missing <link>.
            link, reason = None, "no_link"
        if link is None:
            skipped.append((what, reason))
            continue
        if guid is not None:
            guids.add(guid)
        entries.append(Entry(
            guid=guid,
            link=link,
            title=_text(raw, "title"),
            summary=_summary(raw),
            # dict.get: feedparser's own get() maps updated->published with a DeprecationWarning
            published=_iso(dict.get(raw, "published_parsed") or dict.get(raw, "updated_parsed")),
        ))
    skip_hours, skip_days = _skips(body)
    return ParsedFeed(title=_text(feed_info, "title"), entries=entries, ttl_seconds=_ttl(feed_info),
                      skipped=skipped, warning=warning, skip_hours=skip_hours, skip_days=skip_days,
                      hub=_feed_link(feed_info, "hub", url), self_url=_feed_link(feed_info, "self", url))


def _skips(body: bytes) -> tuple[frozenset[int], frozenset[str]]:
    hours: set[int] = set()
    days: set[str] = set()
    if (m := _SKIP_HOURS.search(body)) is not None:
        # RSS 2.0 says 0-23; some feeds write 24 for midnight
        hours = {int(h) % 24 for h in _HOUR.findall(m.group(1)) if int(h) <= 24}
    if (m := _SKIP_DAYS.search(body)) is not None:
        days = {d.decode().lower() for d in _DAY.findall(m.group(1))} & _DAY_NAMES
    return frozenset(hours), frozenset(days)


def _feed_link(feed_info: Any, rel: str, base: str) -> str | None:
    """The first http(s) target of a feed-level link relation (WebSub discovery), absolute."""
    for item in feed_info.get("links", []):
        if str(item.get("rel", "")).lower() != rel:
            continue
        href = _clean(item.get("href"))
        try:
            absolute = urljoin(base, href) if href and len(href) <= MAX_LINK_LENGTH else ""
        except ValueError:
            continue
        if urlsplit(absolute).scheme.lower() in ("http", "https") and not any(c.isspace() for c in absolute):
            return absolute
    return None


def _written_in(body: bytes, link: str) -> bool:
    raw = link.encode("utf-8", "replace")
    return raw in body or raw.replace(b"&", b"&amp;") in body


def _headers(url: str, content_type: str | None) -> dict[str, str]:
    headers = {"content-location": url}
    _, _, params = (content_type or "").partition(";")
    charset = next((v.strip().strip("\"'") for k, _, v in (p.partition("=") for p in params.split(";"))
                    if k.strip().lower() == "charset" and v.strip()), None)
    # Without a charset, say application/xml: feedparser would otherwise apply RFC 3023's "text/xml means
    # us-ascii" (or complain about a missing type) and warn on every UTF-8 feed. The XML declaration and
    # BOM then decide, which is also what RFC 7303 prescribes today.
    headers["content-type"] = f"application/xml; charset={charset}" if charset else "application/xml"
    return headers


def _link(raw: Any, base: str) -> tuple[str | None, str]:
    candidates = [raw.get("link")] + [
        item.get("href") for item in raw.get("links", []) if item.get("rel", "alternate") == "alternate"
    ]
    link = next((_clean(c) for c in candidates if _clean(c)), "")
    if not link:
        return None, "no_link"
    if len(link) > MAX_LINK_LENGTH:
        return None, "invalid_url"
    try:
        absolute = urljoin(base, link)
        parts = urlsplit(absolute)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None, "invalid_url"
    if parts.scheme.lower() not in ("http", "https"):
        return None, "bad_scheme"
    if not host or any(ch.isspace() for ch in host) or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in absolute):
        return None, "invalid_url"
    # Unencoded spaces in paths are common in hand-made feeds; browsers send them as %20, so do we.
    return absolute.replace(" ", "%20"), ""


def _clean(value: Any) -> str:
    return " ".join(value.split()) if isinstance(value, str) else ""


def _text(container: Any, key: str) -> str:
    value = container.get(key)
    if not isinstance(value, str):
        return ""
    detail = container.get(f"{key}_detail") or {}
    if "html" in str(detail.get("type", "text/html")):
        return html_to_text(value)
    return _clean(value)


def _summary(raw: Any) -> str:
    if raw.get("summary"):
        return _text(raw, "summary")
    for content in raw.get("content", []):
        if content.get("value"):
            return _text({"c": content.get("value"), "c_detail": content}, "c")
    return ""


def _iso(value: time.struct_time | None) -> str | None:
    if value is None:
        return None
    try:  # feedparser's struct_time is already UTC
        return datetime.fromtimestamp(timegm(value), UTC).isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError, TypeError):
        return None


def _ttl(feed_info: Any) -> float | None:
    seconds: float | None = None
    try:
        ttl = float(str(feed_info.get("ttl", "")).strip() or "nan")
        if ttl > 0:
            seconds = ttl * 60
    except ValueError:
        pass
    if seconds is None:
        period = _PERIODS.get(str(feed_info.get("sy_updateperiod", "")).strip().lower())
        try:
            frequency = float(str(feed_info.get("sy_updatefrequency", "1")).strip() or "1")
        except ValueError:
            frequency = 1.0
        if period is not None and frequency > 0:
            seconds = period / frequency
    if seconds is None or seconds != seconds:  # NaN
        return None
    return min(seconds, MAX_TTL_SECONDS)


class _TextExtractor(HTMLParser):
    _SKIP = frozenset({"script", "style", "template", "noscript"})
    _BLOCK = frozenset({"p", "br", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
                        "section", "article", "pre", "td", "th", "hr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self._BLOCK:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Tags dropped (script/style with their content), entities decoded, whitespace collapsed."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return " ".join("".join(parser.parts).split())
