"""URL identity: canonical form (courlan), the site a URL belongs to, and the stable article id."""

from __future__ import annotations

import functools
import hashlib
from urllib.parse import urljoin, urlsplit, urlunsplit

import courlan


class InvalidURL(ValueError):
    """A URL we refuse to handle: unparsable, or not http(s)."""


def canonicalize(url: str, base: str | None = None) -> str:
    """Canonical form used for identity: absolute, http(s) only, lower-cased host, default port, fragment and
    tracking parameters removed, query parameters sorted (courlan's rules)."""
    url = (url or "").strip()
    try:
        if base:
            url = urljoin(base, url)
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed IPv6 bracket, ...: the caller's InvalidURL path, not a crash
        raise InvalidURL(f"not an http(s) URL: {url[:200]!r}: {exc}") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidURL(f"not an http(s) URL: {url[:200]!r}")
    try:
        normalized = courlan.normalize_url(url, strict=False)
    except Exception as exc:  # courlan raises assorted ValueErrors on garbage
        raise InvalidURL(f"cannot normalise {url[:200]!r}: {exc}") from exc
    # courlan leaves an empty path as "/" only sometimes; make it deterministic.
    parts = urlsplit(normalized)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


def site_of(url: str) -> str:
    """The registered domain (``www.bbc.co.uk`` -> ``bbc.co.uk``); falls back to the host for IPs/localhost."""
    parts = urlsplit(url)
    return _site_of_host(parts.netloc, parts.hostname)


@functools.lru_cache(maxsize=4096)
def _site_of_host(netloc: str, hostname: str | None) -> str:
    # the public-suffix lookup costs ~0.3 ms and depends on the host alone; a worker sees few hosts
    domain = courlan.extract_domain(f"http://{netloc}/")
    if domain:
        return str(domain)
    return (hostname or "unknown").lower()


def article_id(canonical_url: str) -> str:
    """Stable id from the canonical URL: 16 hex characters of SHA-256 (64 bits)."""
    return hashlib.sha256(canonical_url.encode("utf-8")).hexdigest()[:16]


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
