"""The fetcher against a real local server misbehaving in every way we know: sizes, bombs, drips, resets,
redirect tricks, binary bodies, bad URLs, conditional GET, Retry-After, and the SSRF guard."""

from __future__ import annotations

import gzip
import io
import socket
import ssl
import struct
import time
import zlib
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest

from worker.core.settings import Settings
from worker.demo.server import LocalServer, Response, quietly
from worker.net.fetch import (
    Clients,
    FetchError,
    FetchResult,
    _ssl_context,
    decode_html,
    fetch,
    is_public_address,
    make_client,
    parse_freshness,
    parse_retry_after,
)

pytestmark = pytest.mark.timeout(30)

HTML = b"<html><head><title>t</title></head><body><p>Hello world</p></body></html>"


def small(**overrides: object) -> Settings:
    """Tight limits so every fault shows up within a second or two."""
    values: dict[str, object] = {
        "allow_private_networks": True, "connect_timeout": 1.0, "read_timeout": 1.0, "total_timeout": 2.0,
        "max_feed_bytes": 64_000, "max_page_bytes": 64_000, "max_redirects": 3,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def failure(url: str, *, kind: str = "page", settings: Settings | None = None,
            **kwargs: object) -> FetchError:
    with pytest.raises(FetchError) as info:
        fetch(url, kind=kind, settings=settings or small(), **kwargs)  # type: ignore[arg-type]
    return info.value


@quietly
def never_ending(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    chunk = b"<p>" + b"x" * 8192 + b"</p>"
    while True:
        h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))


@quietly
def big_without_length(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.send_header("Connection", "close")
    h.end_headers()
    for _ in range(100):
        h.wfile.write(b"<p>" + b"y" * 4096 + b"</p>")
    h.close_connection = True


class SlowDrip:
    """One byte every 0.2 s of a 1000-byte body (200 s in all): every read is quick, only the total is long.
    Counts the bytes it got out, so a test can tell the client hung up long before the end."""

    def __init__(self) -> None:
        self.sent = 0

    def __call__(self, h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", "1000")
        h.end_headers()
        try:
            for _ in range(1000):
                h.wfile.write(b"x")
                h.wfile.flush()
                self.sent += 1
                time.sleep(0.2)
        except OSError:
            h.close_connection = True


@quietly
def stall_after_headers(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.send_header("Content-Length", "1000")
    h.end_headers()
    h.wfile.write(b"<html>")
    h.wfile.flush()
    time.sleep(120)  # longer than the test's own timeout: only the client's limits can end the download


def reset(h: BaseHTTPRequestHandler) -> None:
    # SO_LINGER with a zero timeout turns close() into a TCP RST.
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.connection.close()
    h.wfile = io.BytesIO()  # the handler flushes after the route returns; the socket is gone by then
    h.close_connection = True


def hang_up(h: BaseHTTPRequestHandler) -> None:
    h.close_connection = True  # no response at all


def redirect(to: str, status: int = 302, headers: dict[str, str] | None = None) -> Response:
    return Response(b"", "text/plain", status, {"Location": to, **(headers or {})})


# --- the happy paths ---------------------------------------------------------------------------------------


def test_page_with_charset_header(http_server: LocalServer) -> None:
    http_server.routes["/p"] = Response("<p>café</p>".encode("latin-1"), "Text/HTML; Charset=ISO-8859-1",
                                        headers={"ETag": '"v1"'})
    result = fetch(http_server.url("/p"), kind="page", settings=small())
    assert (result.status, result.content_type, result.charset) == (200, "text/html", "iso-8859-1")
    assert result.etag == '"v1"'
    assert result.url == http_server.url("/p") and not result.not_modified
    assert decode_html(result) == "<p>café</p>"


def test_user_agent_and_accept_encoding_sent(http_server: LocalServer) -> None:
    seen: dict[str, str] = {}

    def echo(h: BaseHTTPRequestHandler) -> None:
        seen.update({k: v for k, v in h.headers.items()})
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", str(len(HTML)))
        h.end_headers()
        h.wfile.write(HTML)

    http_server.routes["/ua"] = echo
    fetch(http_server.url("/ua"), kind="page", settings=small(user_agent="test-agent/9"))
    assert seen["User-Agent"] == "test-agent/9"
    assert seen["Accept-Encoding"] == "gzip, deflate"
    assert "If-None-Match" not in seen


@pytest.mark.parametrize("coding", ["gzip", "deflate-zlib", "deflate-raw"])
def test_compressed_page_is_decoded(http_server: LocalServer, coding: str) -> None:
    if coding == "gzip":
        body, header = gzip.compress(HTML), "gzip"
    elif coding == "deflate-zlib":
        body, header = zlib.compress(HTML), "deflate"
    else:
        raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        body, header = raw.compress(HTML) + raw.flush(), "deflate"
    http_server.routes["/z"] = Response(body, "text/html", headers={"Content-Encoding": header})
    assert fetch(http_server.url("/z"), kind="page", settings=small()).body == HTML


def test_page_with_no_text_is_fetched(http_server: LocalServer) -> None:
    # Empty pages are the extractor's call ("no_text"), not a download failure.
    http_server.routes["/empty"] = Response(b"<html><body>   </body></html>", "text/html")
    result = fetch(http_server.url("/empty"), kind="page", settings=small())
    assert decode_html(result).strip() == "<html><body>   </body></html>"
    http_server.routes["/nothing"] = Response(b"", "text/html")
    assert fetch(http_server.url("/nothing"), kind="page", settings=small()).body == b""


@pytest.mark.parametrize(("body", "charset", "expected"), [
    ('<meta charset="windows-1251"><p>Привет</p>'.encode("cp1251"), None, "Привет"),
    ('<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"><p>café</p>'.encode("latin-1"),
     None, "café"),
    ("\ufeff<p>naïve</p>".encode("utf-16"), "iso-8859-1", "naïve"),  # a BOM beats the header
    ("<p>plain utf-8 ünïcödé</p>".encode(), None, "ünïcödé"),
    ("<p>" + "déjà vu, à bientôt, très bien, " * 20 + "</p>", None, "très bien"),
    (b"<p>broken \xff\xfe utf-8</p>", "utf-8", "broken \ufffd\ufffd utf-8"),
    (b"<p>unknown charset label</p>", "no-such-charset", "unknown charset label"),
])
def test_decode_html(http_server: LocalServer, body: bytes | str, charset: str | None, expected: str) -> None:
    raw = body.encode("latin-1") if isinstance(body, str) else body
    http_server.routes["/d"] = Response(raw, "text/html" + (f"; charset={charset}" if charset else ""))
    result = fetch(http_server.url("/d"), kind="page", settings=small())
    assert expected in decode_html(result)


# --- size limits and bombs ---------------------------------------------------------------------------------


def test_too_large_by_content_length(http_server: LocalServer) -> None:
    http_server.routes["/big"] = Response(b"<p>" + b"x" * 200_000, "text/html")
    err = failure(http_server.url("/big"))
    assert (err.reason, err.retryable) == ("too_large", False)
    assert "Content-Length" in str(err)


def test_too_large_without_content_length(http_server: LocalServer) -> None:
    http_server.routes["/big"] = big_without_length
    assert failure(http_server.url("/big")).reason == "too_large"


def test_never_ending_chunked_response_is_cut_off(http_server: LocalServer) -> None:
    http_server.routes["/forever"] = never_ending
    # Without the cap on the decoded size the total timeout would end it instead, as "timeout".
    err = failure(http_server.url("/forever"), settings=small(total_timeout=30))
    assert (err.reason, err.retryable) == ("too_large", False)


def test_gzip_bomb(http_server: LocalServer) -> None:
    bomb = gzip.compress(b"\0" * 50_000_000, compresslevel=9)  # ~50 KB on the wire
    http_server.routes["/bomb"] = Response(bomb, "text/html", headers={"Content-Encoding": "gzip"})
    err = failure(http_server.url("/bomb"))
    assert err.reason == "decompression_bomb"


def test_large_honest_gzip_is_too_large_not_a_bomb(http_server: LocalServer) -> None:
    import random

    rng = random.Random(1)
    text = " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "news", "story"]) for _ in range(40_000))
    http_server.routes["/gz"] = Response(gzip.compress(text.encode()), "text/html",
                                         headers={"Content-Encoding": "gzip"})
    assert failure(http_server.url("/gz")).reason == "too_large"


def test_unsupported_or_corrupt_encoding(http_server: LocalServer) -> None:
    http_server.routes["/br"] = Response(b"\x0b\x02\x80hello\x03", "text/html",
                                         headers={"Content-Encoding": "br"})
    assert failure(http_server.url("/br")).reason == "protocol"
    http_server.routes["/bad"] = Response(b"not gzip at all", "text/html",
                                          headers={"Content-Encoding": "gzip"})
    assert failure(http_server.url("/bad")).reason == "protocol"


# --- content type and binary sniffing ----------------------------------------------------------------------

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n" + b"\x00\x01\x02" * 500
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 2000


@pytest.mark.parametrize(("body", "content_type", "kind"), [
    (PDF, "application/pdf", "page"),
    (b"<html>hi</html>", "application/pdf", "page"),  # the label alone is enough
    (PNG, "image/png", "page"),
    (PNG, "image/png", "feed"),
    (PDF, "application/pdf", "feed"),
    (b"hello", "text/plain", "page"),
    (b"{}", "application/json", "page"),
    (PNG, "text/html", "page"),  # mislabelled binary: sniffed
    (PDF, "application/rss+xml", "feed"),
    (b"\x00\x01\x02\x03" * 10, "", "page"),  # short, unlabelled and binary
])
def test_binary_and_wrong_types_refused(http_server: LocalServer, body: bytes, content_type: str,
                                        kind: str) -> None:
    http_server.routes["/bin"] = Response(body, content_type)
    err = failure(http_server.url("/bin"), kind=kind)
    assert (err.reason, err.retryable) == ("content_type", False)


@pytest.mark.parametrize("content_type", ["text/html", "text/plain", "application/octet-stream", "",
                                          "application/rss+xml", "application/atom+xml; charset=utf-8",
                                          "application/feed+json", "text/xml"])
def test_feeds_accept_mislabelled_types(http_server: LocalServer, content_type: str) -> None:
    http_server.routes["/f"] = Response(b'<?xml version="1.0"?><rss version="2.0"/>', content_type)
    assert fetch(http_server.url("/f"), kind="feed", settings=small()).status == 200


def test_utf16_feed_is_not_mistaken_for_binary(http_server: LocalServer) -> None:
    body = '<?xml version="1.0" encoding="utf-16"?><rss version="2.0"/>'.encode("utf-16")
    http_server.routes["/u16"] = Response(body, "application/xml")
    assert fetch(http_server.url("/u16"), kind="feed", settings=small()).body == body
    bomless = '<?xml version="1.0" encoding="utf-16le"?><rss/>'.encode("utf-16-le")
    http_server.routes["/u16le"] = Response(bomless, "application/xml")
    assert fetch(http_server.url("/u16le"), kind="feed", settings=small()).body == bomless


# --- time limits -------------------------------------------------------------------------------------------


def test_slow_drip_hits_total_timeout(http_server: LocalServer) -> None:
    """Each byte comes well within the read timeout: only the wall-clock cap can end the download, and it
    does, long before the body is complete."""
    drip = SlowDrip()
    http_server.routes["/drip"] = quietly(drip)
    err = failure(http_server.url("/drip"), settings=small(total_timeout=1.5, read_timeout=1.0))
    assert (err.reason, err.retryable) == ("timeout", True)
    assert "total_timeout" in str(err), err
    assert 0 < drip.sent < 1000


def test_stalled_body_hits_read_timeout(http_server: LocalServer) -> None:
    http_server.routes["/stall"] = stall_after_headers
    err = failure(http_server.url("/stall"), settings=small(read_timeout=0.5, total_timeout=20))
    assert err.reason == "timeout" and err.retryable
    assert "total_timeout" not in str(err), err  # the read timeout ended it, not the wall-clock cap


def test_stall_is_bounded_by_total_even_with_long_read_timeout(http_server: LocalServer) -> None:
    http_server.routes["/stall"] = stall_after_headers
    # The server stalls for longer than this test may run: without the wall-clock cap the 120 s read timeout
    # would hold the download past the test's own timeout.
    err = failure(http_server.url("/stall"), settings=small(read_timeout=120, total_timeout=1))
    assert err.reason == "timeout"
    assert "total_timeout" in str(err), err


# --- HTTP errors and broken connections --------------------------------------------------------------------


@pytest.mark.parametrize(("status", "reason", "retryable"), [
    (500, "http_5xx", True), (502, "http_5xx", True), (503, "http_5xx", True),
    (404, "http_4xx", False), (403, "http_4xx", False), (410, "http_4xx", False),
    (429, "http_4xx", True), (408, "http_4xx", True),
])
def test_http_errors(http_server: LocalServer, status: int, reason: str, retryable: bool) -> None:
    http_server.routes["/e"] = Response(b"error page", "text/html", status, {"Retry-After": "120"})
    err = failure(http_server.url("/e"))
    assert (err.reason, err.retryable, err.status, err.retry_after) == (reason, retryable, status, 120.0)


def test_retry_after_http_date(http_server: LocalServer) -> None:
    at = int(time.time()) + 90  # an HTTP date has whole seconds
    http_server.routes["/busy"] = Response(b"slow down", "text/plain", 429,
                                           {"Retry-After": formatdate(at, usegmt=True)})
    before = time.time()
    err = failure(http_server.url("/busy"))
    after = time.time()
    # the seconds from the moment the header was read to the date it names
    assert err.retry_after is not None and at - after <= err.retry_after <= at - before
    http_server.routes["/ok"] = Response(HTML, "text/html", headers={"Retry-After": "30"})
    assert fetch(http_server.url("/ok"), kind="page", settings=small()).retry_after == 30.0


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("", None), ("0", 0.0), ("120", 120.0), (" 5 ", 5.0), ("1.5", 1.5), ("-10", 0.0),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past
    ("99999999999", 7 * 86400.0), ("soon", None), ("nan", None), ("Wed, 99 Foo", None),
])
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


@pytest.mark.parametrize(("headers", "expected"), [
    ({}, None), ({"Cache-Control": "max-age=600"}, 600.0), ({"Cache-Control": "public, s-maxage=60"}, None),
    ({"Cache-Control": 'max-age="90"'}, 90.0), ({"Cache-Control": "max-age=600", "Age": "100"}, 500.0),
    ({"Cache-Control": "max-age=600", "Age": "900"}, None), ({"Cache-Control": "no-store, max-age=600"}, None),
    ({"Cache-Control": "max-age=0"}, None), ({"Cache-Control": "max-age=9" * 20}, None),
    ({"Cache-Control": "max-age=9999999999"}, 7 * 86400.0),
    ({"Expires": "Wed, 21 Oct 2015 08:28:00 GMT", "Date": "Wed, 21 Oct 2015 07:28:00 GMT"}, 3600.0),
    ({"Expires": "0"}, None), ({"Expires": "-1"}, None), ({"Expires": "Wed, 21 Oct 2015 08:28:00 GMT"}, None),
])
def test_parse_freshness(headers: dict[str, str], expected: float | None) -> None:
    assert parse_freshness(httpx.Headers(headers)) == expected


def test_connection_reset(http_server: LocalServer) -> None:
    http_server.routes["/reset"] = reset
    err = failure(http_server.url("/reset"))
    assert err.retryable and err.reason in ("connect", "protocol")


def test_server_hangs_up_without_response(http_server: LocalServer) -> None:
    http_server.routes["/hangup"] = hang_up
    err = failure(http_server.url("/hangup"))
    assert (err.reason, err.retryable) == ("protocol", True)


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    err = failure(f"http://127.0.0.1:{port}/")
    assert (err.reason, err.retryable) == ("connect", True)


def test_dns_failure() -> None:
    err = failure("http://no-such-host.invalid/feed.xml")
    assert err.reason == "dns"


# --- redirects ---------------------------------------------------------------------------------------------


def test_redirects_are_followed_and_final_url_reported(http_server: LocalServer) -> None:
    http_server.routes["/a"] = redirect("/b", 301)
    http_server.routes["/b"] = redirect(http_server.url("/c"), 307)
    http_server.routes["/c"] = redirect("c2?x=1", 303)
    http_server.routes["/c2?x=1"] = Response(HTML, "text/html")
    result = fetch(http_server.url("/a"), kind="page", settings=small())
    assert result.url == http_server.url("/c2?x=1") and result.body == HTML


def test_redirect_loop(http_server: LocalServer) -> None:
    http_server.routes["/x"] = redirect("/y")
    http_server.routes["/y"] = redirect("/x")
    assert failure(http_server.url("/x"), settings=small(max_redirects=10)).reason == "redirect_loop"
    http_server.routes["/self"] = redirect("/self")
    assert failure(http_server.url("/self")).reason == "redirect_loop"


def test_too_many_redirects(http_server: LocalServer) -> None:
    for i in range(10):
        http_server.routes[f"/r{i}"] = redirect(f"/r{i + 1}")
    http_server.routes["/r10"] = Response(HTML, "text/html")
    assert failure(http_server.url("/r0"), settings=small(max_redirects=3)).reason == "too_many_redirects"
    assert fetch(http_server.url("/r7"), kind="page", settings=small(max_redirects=3)).body == HTML


def test_cookie_dance_is_not_a_loop_and_cookies_do_not_persist(http_server: LocalServer) -> None:
    def gate(h: BaseHTTPRequestHandler) -> None:
        if "consent=yes" in (h.headers.get("Cookie") or ""):
            body = b"<p>welcome</p>"
            h.send_response(200)
            h.send_header("Content-Type", "text/html")
        else:
            body = b""
            h.send_response(302)
            h.send_header("Location", "/gate")
            h.send_header("Set-Cookie", "consent=yes; Path=/")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    http_server.routes["/gate"] = gate
    client = make_client(small())
    try:
        for _ in range(2):  # the second fetch must dance again: nothing was kept in the shared client
            assert fetch(http_server.url("/gate"), kind="page", settings=small(), client=client).body == (
                b"<p>welcome</p>")
        assert http_server.hits["/gate"] == 4
        assert not list(client.cookies.jar)
    finally:
        client.close()


@pytest.mark.parametrize("target", ["ftp://example.com/file", "file:///etc/passwd", "javascript:alert(1)",
                                    "gopher://127.0.0.1:6379/_INFO", "data:text/html,hi"])
def test_redirect_to_non_http_scheme(http_server: LocalServer, target: str) -> None:
    http_server.routes["/go"] = redirect(target)
    assert failure(http_server.url("/go")).reason == "bad_scheme"


def test_idn_host_passes_validation() -> None:
    # An IDN host is fine as far as the URL goes; it fails later, at DNS, in this offline sandbox.
    assert failure("http://bücher.invalid/").reason == "dns"


def test_redirect_to_garbage(http_server: LocalServer) -> None:
    http_server.routes["/go"] = redirect("http://[not-an-ip/")
    assert failure(http_server.url("/go")).reason == "invalid_url"


# --- bad URLs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["", "   ", "not a url", "example.com/feed", "http://", "http:///path",
                                 "http://exa mple.com/", "http://example.com:99999/", "http://[::1/",
                                 "http://example.com/\x00", "http://example.com/" + "a" * 9000,
                                 "//example.com/", "http://[not-an-ip/", "http://exa<mple.com/"])
def test_invalid_urls(url: str) -> None:
    err = failure(url)
    assert (err.reason, err.retryable) == ("invalid_url", False)


@pytest.mark.parametrize("url", ["ftp://example.com/feed.xml", "file:///etc/passwd", "javascript:alert(1)",
                                 "mailto:a@example.com", "data:text/html,<p>x", "gopher://example.com/"])
def test_non_http_schemes(url: str) -> None:
    err = failure(url)
    assert (err.reason, err.retryable) == ("bad_scheme", False)


# --- conditional GET ---------------------------------------------------------------------------------------


def test_conditional_get_304(http_server: LocalServer) -> None:
    lastmod = "Mon, 01 Jan 2024 00:00:00 GMT"
    http_server.routes["/feed.xml"] = Response(b'<rss version="2.0"/>', "application/rss+xml",
                                               headers={"ETag": '"abc"', "Last-Modified": lastmod})
    first = fetch(http_server.url("/feed.xml"), kind="feed", settings=small())
    assert (first.status, first.etag, first.last_modified) == (200, '"abc"', lastmod)
    again = fetch(http_server.url("/feed.xml"), kind="feed", settings=small(), etag=first.etag)
    assert again.not_modified and again.status == 304 and again.body == b""
    by_date = fetch(http_server.url("/feed.xml"), kind="feed", settings=small(), last_modified=lastmod)
    assert by_date.not_modified
    changed = fetch(http_server.url("/feed.xml"), kind="feed", settings=small(), etag='"old"')
    assert changed.status == 200 and changed.body


# --- SSRF guard --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "public"), [
    ("8.8.8.8", True), ("1.1.1.1", True), ("93.184.216.34", True), ("2606:4700:4700::1111", True),
    ("127.0.0.1", False), ("127.1.2.3", False), ("10.0.0.1", False), ("172.16.5.4", False),
    ("192.168.1.1", False), ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False),
    ("224.0.0.1", False), ("239.255.255.250", False), ("240.0.0.1", False), ("255.255.255.255", False),
    ("198.18.0.1", False), ("192.0.2.1", False),
    ("::1", False), ("::", False), ("fe80::1", False), ("fc00::1", False), ("fd12:3456::1", False),
    ("ff02::1", False), ("::ffff:127.0.0.1", False), ("::ffff:10.1.2.3", False), ("::ffff:8.8.8.8", True),
    ("2002:7f00:1::", False), ("64:ff9b::a9fe:a9fe", False), ("2001:db8::1", False),
])
def test_address_classes(address: str, public: bool) -> None:
    assert is_public_address(address) is public


STRICT = {"allow_private_networks": False}


@pytest.mark.parametrize("url", ["http://127.0.0.1:1/", "http://10.0.0.1/", "http://169.254.169.254/latest/",
                                 "http://[::1]:1/", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/",
                                 "http://192.168.0.1/admin"])
def test_private_literals_refused_without_connecting(url: str) -> None:
    err = failure(url, settings=small(**STRICT))
    assert (err.reason, err.retryable) == ("private_address", False)


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]", "2130706433", "0.0.0.0"])
def test_private_literals_never_open_a_connection(host: str) -> None:
    """A listening socket on loopback sees no connection at all: the literal is judged before connecting."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        err = failure(f"http://{host}:{port}/feed.xml", settings=small(**STRICT))
        assert err.reason == "private_address"
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing in the accept queue
            listener.accept()


def test_private_server_refused_end_to_end(http_server: LocalServer) -> None:
    http_server.routes["/secret"] = Response(HTML, "text/html")
    assert failure(http_server.url("/secret"), settings=small(**STRICT)).reason == "private_address"
    name_url = http_server.url("/secret").replace("127.0.0.1", "localhost")
    assert failure(name_url, settings=small(**STRICT)).reason == "private_address"
    assert http_server.hits.get("/secret", 0) == 0


def test_redirect_from_allowed_to_private_is_refused(http_server: LocalServer) -> None:
    # 127.0.0.1 plays the public internet (allow-listed); 127.0.0.2 plays the internal service.
    with LocalServer("127.0.0.2") as internal:
        internal.routes["/admin"] = Response(b"<p>internal</p>", "text/html")
        http_server.routes["/ok"] = Response(HTML, "text/html")
        http_server.routes["/hop"] = redirect(internal.url("/admin"))
        client = make_client(small(**STRICT), allowed_networks=["127.0.0.1/32"])
        try:
            ok = fetch(http_server.url("/ok"), kind="page", settings=small(**STRICT), client=client)
            assert ok.body == HTML
            err = failure(http_server.url("/hop"), settings=small(**STRICT), client=client)
            assert err.reason == "private_address"
            assert internal.hits.get("/admin", 0) == 0
        finally:
            client.close()


MIXED_NAME = "mixed.test"


@pytest.fixture
def mixed_name(monkeypatch: pytest.MonkeyPatch) -> str:
    """A host name that resolves to 127.0.0.1 and 127.0.0.2 on every machine: the resolver answers for this
    one name, whatever ``localhost`` resolves to here (an IPv4-only host gives it one address only)."""
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: object, *args: object, **kwargs: object) -> list[Any]:
        if host == MIXED_NAME:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in ("127.0.0.1", "127.0.0.2")]
        return real(host, port, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return MIXED_NAME


def test_name_with_any_private_address_is_refused(http_server: LocalServer, mixed_name: str) -> None:
    """Allowing one of a name's addresses does not let the name in: every address it resolves to must pass."""
    http_server.routes["/ok"] = Response(HTML, "text/html")
    url = http_server.url("/ok").replace("127.0.0.1", mixed_name)
    one = make_client(small(**STRICT), allowed_networks=["127.0.0.1/32"])
    both = make_client(small(**STRICT), allowed_networks=["127.0.0.0/30"])
    try:
        assert failure(url, settings=small(**STRICT), client=one).reason == "private_address"
        assert http_server.hits.get("/ok") is None
        # the same name is fetched once every address it has is allowed
        assert fetch(url, kind="page", settings=small(**STRICT), client=both).body == HTML
    finally:
        one.close()
        both.close()


def test_strict_call_on_a_lenient_pooled_client(http_server: LocalServer) -> None:
    """A call may only tighten its client: a strict fetch through a client made for private networks is
    refused both on a new connection and on a pooled one opened earlier by a lenient call."""
    http_server.routes["/p"] = Response(HTML, "text/html")
    client = make_client(small())
    url = http_server.url("/p").replace("127.0.0.1", "localhost")
    try:
        # first a new connection, then a pooled one
        assert failure(url, settings=small(**STRICT), client=client).reason == "private_address"
        assert fetch(url, kind="page", settings=small(), client=client).body == HTML  # pools a connection
        hits = http_server.hits["/p"]
        assert failure(url, settings=small(**STRICT), client=client).reason == "private_address"  # reused one
        # The request did go out, over the pooled connection (no new connection was vetted): it is the check
        # of the answering peer that refused it.
        assert http_server.hits["/p"] == hits + 1
    finally:
        client.close()


def test_allow_private_networks_from_environment(http_server: LocalServer,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    http_server.routes["/p"] = Response(HTML, "text/html")
    monkeypatch.setenv("INGEST_ALLOW_PRIVATE_NETWORKS", "false")
    assert failure(http_server.url("/p"), settings=Settings(total_timeout=2)).reason == "private_address"
    monkeypatch.setenv("INGEST_ALLOW_PRIVATE_NETWORKS", "true")
    assert fetch(http_server.url("/p"), kind="page", settings=Settings(total_timeout=2)).body == HTML


def test_fetch_result_is_plain_data() -> None:
    result = FetchResult("http://e.com/", 304, b"", "", None, None, None, None)
    assert result.not_modified


def test_allowed_networks_setting_opens_one_network_with_the_guard_on() -> None:
    """``INGEST_ALLOWED_NETWORKS`` (the way a user allows an internal mirror): its network is reachable, the
    rest of the private space stays refused, before any connection."""
    with LocalServer("127.0.0.1") as allowed, LocalServer("127.0.0.2") as other:
        allowed.routes["/feed.xml"] = other.routes["/feed.xml"] = Response(b"<rss/>", "application/rss+xml")
        settings = small(allow_private_networks=False, allowed_networks="127.0.0.1/32")
        assert settings.allowed_networks == ["127.0.0.1/32"]  # the comma-separated form of the environment
        assert fetch(allowed.url("/feed.xml"), kind="feed", settings=settings).status == 200
        with pytest.raises(FetchError) as refused:
            fetch(other.url("/feed.xml"), kind="feed", settings=settings)
        assert refused.value.reason == "private_address" and other.hits == {}


def test_a_bad_allowed_network_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="not-a-network"):
        small(allowed_networks="10.0.0.0/8,not-a-network")


def test_the_shard_clients_load_the_ca_bundle_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process's sixteen clients share one TLS context: each loading the CA bundle again cost ~0.4 s of CPU
    at every worker start (2 s per extract process on a slow VM, inside the first tasks)."""
    _ssl_context()
    loads = []
    real = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(args)
        real(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    clients = Clients(small())
    try:
        assert loads == []
    finally:
        clients.close()
