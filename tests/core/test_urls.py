"""URL identity, pure: the canonical form, the site a URL belongs to, the article id and redaction for logs."""

from __future__ import annotations

import hashlib
import re

import pytest

from worker.core.urls import InvalidURL, article_id, canonicalize, redact_url, site_of


@pytest.mark.parametrize(("url", "expected"), [
    ("HTTP://Example.COM:80/a?utm_source=x&b=2&a=1#frag", "http://example.com/a?a=1&b=2"),
    ("https://example.com", "https://example.com/"),
    ("https://example.com:443/", "https://example.com/"),
    ("http://example.com:8080/x", "http://example.com:8080/x"),
    ("  http://e.com/a  ", "http://e.com/a"),
    ("https://news.example/story?id=7&fbclid=abc", "https://news.example/story?id=7"),
])
def test_canonical_form(url: str, expected: str) -> None:
    assert canonicalize(url) == expected
    assert canonicalize(expected) == expected  # a canonical URL is its own canonical form


def test_relative_urls_resolve_against_the_base() -> None:
    assert canonicalize("/rel/p", "http://base.org/dir/x") == "http://base.org/rel/p"
    assert canonicalize("page.html", "http://base.org/dir/x") == "http://base.org/dir/page.html"
    assert canonicalize("https://other.org/a", "http://base.org/dir/") == "https://other.org/a"


@pytest.mark.parametrize("url", ["ftp://x.com/", "javascript:alert(1)", "mailto:a@b.c", "/only/a/path", "",
                                 "http:///nohost", "HTTPS://"])
def test_not_http_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidURL, match="not an http\\(s\\) URL"):
        canonicalize(url)


def test_the_refusal_names_the_url_shortened() -> None:
    with pytest.raises(InvalidURL) as info:
        canonicalize("ftp://x.com/" + "a" * 500)
    assert str(info.value) == f"not an http(s) URL: {('ftp://x.com/' + 'a' * 500)[:200]!r}"


@pytest.mark.parametrize("base", [None, "http://base.org/"])
def test_garbage_urlsplit_cannot_read_is_refused_as_invalid(base: str | None) -> None:
    # the poll step skips an entry on InvalidURL; urlsplit's bare ValueError would fail the whole feed
    with pytest.raises(InvalidURL, match=r"not an http\(s\) URL: 'http://\[::1/': Invalid IPv6 URL"):
        canonicalize("http://[::1/", base)


def test_a_url_courlan_cannot_normalise_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import courlan

    def broken(url: str, **_: object) -> str:
        raise ValueError("no")

    monkeypatch.setattr(courlan, "normalize_url", broken)
    with pytest.raises(InvalidURL, match=re.escape("cannot normalise 'http://e.com/a': no")):
        canonicalize("http://e.com/a")


@pytest.mark.parametrize(("url", "site"), [
    ("http://www.bbc.co.uk/x", "bbc.co.uk"),
    ("http://news.example.com/", "example.com"),
    ("http://a.b.example.co.uk:81/", "example.co.uk"),
    ("http://127.0.0.1:8080/x", "127.0.0.1"),
    ("http://localhost/x", "localhost"),
    ("http://LOCALHOST:9/x", "localhost"),
    ("not a url", "unknown"),
])
def test_site_is_the_registered_domain_or_the_host(url: str, site: str) -> None:
    assert site_of(url) == site


def test_article_id_is_16_hex_of_sha256() -> None:
    url = "http://e.com/"
    assert article_id(url) == hashlib.sha256(url.encode()).hexdigest()[:16] == "24a56cef5a91118a"
    assert article_id("http://e.com/ü") == hashlib.sha256("http://e.com/ü".encode()).hexdigest()[:16]


@pytest.mark.parametrize(("url", "shown"), [
    ("http://user:pw@h.com:81/p?q#f", "http://user:***@h.com:81/p?q#f"),
    ("http://:pw@h.com/p", "http://:***@h.com/p"),
    ("https://u:p@H.example/", "https://u:***@h.example/"),
    ("http://user@h.com/p", "http://user@h.com/p"),
    ("http://h.com/p", "http://h.com/p"),
    ("http://[::1/", "***"),
])
def test_redact_url_hides_passwords_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_an_empty_url_is_refused_as_empty() -> None:
    for empty in ("", None):
        with pytest.raises(InvalidURL) as info:
            canonicalize(empty)  # type: ignore[arg-type]
        assert str(info.value) == "not an http(s) URL: ''"


def test_a_long_url_that_cannot_be_normalised_is_named_by_its_first_200_characters(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import courlan

    def broken(url: str, **_: object) -> str:
        raise ValueError("no")

    monkeypatch.setattr(courlan, "normalize_url", broken)
    long = "http://e.com/" + "a" * 300
    with pytest.raises(InvalidURL) as info:
        canonicalize(long)
    assert str(info.value) == f"cannot normalise {long[:200]!r}: no"


def test_redact_url_without_a_host() -> None:
    assert redact_url("http://u:p@/x") == "http://u:***@/x"


def test_a_long_url_urlsplit_cannot_read_is_named_by_its_first_200_characters() -> None:
    url = "http://[::1/" + "a" * 300
    with pytest.raises(InvalidURL) as info:
        canonicalize(url)
    assert str(info.value) == f"not an http(s) URL: {url[:200]!r}: Invalid IPv6 URL"
