"""The feed parser on a corpus of bad and odd feeds, each downloaded from the real local server first, the
way the pipeline gets them."""

from __future__ import annotations

import gzip

import pytest

from worker.core.settings import Settings
from worker.demo.server import LocalServer, Response
from worker.net.fetch import FetchError, fetch
from worker.poll.parse import FeedError, ParsedFeed, html_to_text, parse_feed

pytestmark = pytest.mark.timeout(30)

SETTINGS = Settings(allow_private_networks=True, total_timeout=5, max_feed_bytes=2_000_000)


def rss(items: str, *, channel: str = "<title>News</title>", encoding: str = "utf-8",
        extra_ns: str = "") -> str:
    return (f'<?xml version="1.0" encoding="{encoding}"?>\n<rss version="2.0"{extra_ns}><channel>{channel}'
            f"{items}</channel></rss>")


def item(guid: str | None, link: str | None, title: str = "t", extra: str = "") -> str:
    parts = [f"<title>{title}</title>", extra]
    if guid is not None:
        parts.append(f'<guid isPermaLink="false">{guid}</guid>')
    if link is not None:
        parts.append(f"<link>{link}</link>")
    return "<item>" + "".join(parts) + "</item>"


def serve(server: LocalServer, body: bytes, content_type: str = "application/rss+xml",
          path: str = "/news/feed.xml", headers: dict[str, str] | None = None) -> ParsedFeed:
    """Serve, fetch and parse, passing the charset on as the pipeline should."""
    server.routes[path] = Response(body, content_type, headers=headers or {})
    result = fetch(server.url(path), kind="feed", settings=SETTINGS)
    header = result.content_type + (f"; charset={result.charset}" if result.charset else "")
    return parse_feed(result.body, url=result.url, content_type=header)


def refused(server: LocalServer, body: bytes, content_type: str = "application/rss+xml") -> FeedError:
    with pytest.raises(FeedError) as info:
        serve(server, body, content_type)
    return info.value


# --- well-formed, to know what good looks like -------------------------------------------------------------


def test_good_rss(http_server: LocalServer) -> None:
    body = rss(
        item("g1", "https://example.com/a", "First &amp; foremost",
             "<description>&lt;p&gt;Some &lt;b&gt;bold&lt;/b&gt; text&lt;script&gt;evil()&lt;/script&gt;"
             "&lt;/p&gt;</description><pubDate>Mon, 01 Jan 2024 10:00:00 +0200</pubDate>"),
        channel="<title>The News</title><ttl>30</ttl>",
    )
    feed = serve(http_server, body.encode())
    assert feed.title == "The News" and feed.ttl_seconds == 1800 and feed.warning is None
    [entry] = feed.entries
    assert (entry.guid, entry.link, entry.title) == ("g1", "https://example.com/a", "First & foremost")
    assert entry.summary == "Some bold text"
    assert entry.published == "2024-01-01T08:00:00+00:00"


def test_atom_with_xml_base_and_content(http_server: LocalServer) -> None:
    body = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="http://other.example/base/">
  <title type="html">&lt;i&gt;Atom&lt;/i&gt; feed</title>
  <entry><id>urn:1</id><title>One</title><link rel="alternate" href="posts/1"/>
    <content type="html">&lt;p&gt;Body &lt;em&gt;text&lt;/em&gt;&lt;/p&gt;</content>
    <updated>2024-03-01T12:00:00-05:00</updated></entry>
</feed>"""
    feed = serve(http_server, body, "application/atom+xml")
    assert feed.title == "Atom feed"
    [entry] = feed.entries
    assert entry.link == "http://other.example/base/posts/1"
    assert entry.summary == "Body text" and entry.published == "2024-03-01T17:00:00+00:00"


def test_sy_update_period_as_ttl(http_server: LocalServer) -> None:
    ns = ' xmlns:sy="http://purl.org/rss/1.0/modules/syndication/"'
    body = rss(item("a", "http://e.com/a"), extra_ns=ns,
               channel="<title>x</title><sy:updatePeriod>daily</sy:updatePeriod>"
                       "<sy:updateFrequency>4</sy:updateFrequency>")
    assert serve(http_server, body.encode()).ttl_seconds == 6 * 3600


def test_skip_hours_and_days(http_server: LocalServer) -> None:
    # feedparser keeps only the last <hour>; all of them count, and nonsense is ignored
    channel = ("<title>x</title><skipHours><hour>0</hour><hour> 7 </hour><hour>24</hour><hour>99</hour>"
               "<hour>x</hour></skipHours><skipDays><day>Saturday</day><day>sunday</day><day>Funday</day>"
               "</skipDays>")
    feed = serve(http_server, rss(item("a", "http://e.com/a"), channel=channel).encode())
    assert feed.skip_hours == {0, 7} and feed.skip_days == {"saturday", "sunday"}
    assert serve(http_server, rss(item("a", "http://e.com/a")).encode()).skip_hours == frozenset()


@pytest.mark.parametrize("ttl", ["0", "-5", "soon", ""])
def test_nonsense_ttl_is_ignored(http_server: LocalServer, ttl: str) -> None:
    body = rss(item("a", "http://e.com/a"), channel=f"<title>x</title><ttl>{ttl}</ttl>")
    assert serve(http_server, body.encode()).ttl_seconds is None


# --- the bad-input corpus ----------------------------------------------------------------------------------


def test_malformed_xml_is_recovered(http_server: LocalServer) -> None:
    body = rss(item("a", "http://e.com/a", "AT&T <b>unclosed") + item("b", "http://e.com/b", "fine"))
    feed = serve(http_server, body.encode())
    assert [e.link for e in feed.entries] == ["http://e.com/a", "http://e.com/b"]
    assert feed.warning and "SAXParseException" in feed.warning


def test_truncated_feed_keeps_complete_items(http_server: LocalServer) -> None:
    body = rss(item("a", "http://e.com/a") + item("b", "http://e.com/b")).encode()[:-40]
    feed = serve(http_server, body)
    assert "http://e.com/a" in [e.link for e in feed.entries]


def test_declared_utf8_but_latin1(http_server: LocalServer) -> None:
    body = rss(item("a", "http://e.com/a", "Café crème")).encode("latin-1")
    feed = serve(http_server, body)
    assert feed.entries[0].title == "Café crème"
    assert feed.warning and "CharacterEncodingOverride" in feed.warning


def test_latin1_declared(http_server: LocalServer) -> None:
    body = rss(item("a", "http://e.com/a", "Straße über Öl"), encoding="iso-8859-1").encode("latin-1")
    assert serve(http_server, body).entries[0].title == "Straße über Öl"


def test_charset_in_header_wins_over_missing_declaration(http_server: LocalServer) -> None:
    body = ('<?xml version="1.0"?><rss version="2.0"><channel><title>Ελληνικά</title>'
            + item("a", "http://e.com/a", "Ειδήσεις") + "</channel></rss>").encode("iso-8859-7")
    feed = serve(http_server, body, "text/xml; charset=iso-8859-7")
    assert (feed.title, feed.entries[0].title) == ("Ελληνικά", "Ειδήσεις")


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-8-sig"])
def test_utf16_and_boms(http_server: LocalServer, codec: str) -> None:
    declared = "utf-16" if "16" in codec else "utf-8"
    text = rss(item("a", "http://e.com/a", "日本語のニュース"), encoding=declared)
    body = text.encode(codec)
    if codec == "utf-16-be":
        body = b"\xfe\xff" + body
    assert serve(http_server, body).entries[0].title == "日本語のニュース"


def test_gzipped_feed(http_server: LocalServer) -> None:
    body = gzip.compress(rss(item("a", "http://e.com/a")).encode())
    feed = serve(http_server, body, headers={"Content-Encoding": "gzip"})
    assert [e.link for e in feed.entries] == ["http://e.com/a"]


def test_html_instead_of_feed(http_server: LocalServer) -> None:
    page = b"<!doctype html><html><head><title>Home</title></head><body><a href='/x'>x</a></body></html>"
    err = refused(http_server, page, "text/html; charset=utf-8")
    assert err.reason == "not_a_feed"


@pytest.mark.parametrize("body", [b"Hello, this is plain text.", b'{"version": "https://jsonfeed.org/version/1"}',
                                  b"/etc/passwd", b"http://127.0.0.1:1/feed", b"<<<>>>&&&;;;"])
def test_garbage_is_not_a_feed(http_server: LocalServer, body: bytes) -> None:
    # The last two would read a local file / fetch a URL if feedparser were handed raw bytes or a str.
    assert refused(http_server, body, "application/octet-stream").reason == "not_a_feed"


def test_binary_garbage_is_refused_by_fetch_and_parser(http_server: LocalServer) -> None:
    body = b"\x01\x02garbage\x03" * 5
    http_server.routes["/bin"] = Response(body, "application/rss+xml")
    with pytest.raises(FetchError) as info:
        fetch(http_server.url("/bin"), kind="feed", settings=SETTINGS)
    assert info.value.reason == "content_type"
    with pytest.raises(FeedError) as parsed:
        parse_feed(body, url=http_server.url("/bin"))
    assert parsed.value.reason == "not_a_feed"


def test_spaces_in_links_are_encoded(http_server: LocalServer) -> None:
    feed = serve(http_server, rss(item("a", "/news/a b.html")).encode())
    assert feed.entries[0].link == http_server.url("/news/a%20b.html")


@pytest.mark.parametrize("body", [b"", b"   \n\t ", b"\xef\xbb\xbf"])
def test_empty_body(http_server: LocalServer, body: bytes) -> None:
    assert refused(http_server, body).reason == "empty_body"


def test_unrecoverable_feed_is_malformed(http_server: LocalServer) -> None:
    assert refused(http_server, b'<?xml version="1.0"?><rss version="2.0"><chan').reason == "malformed"
    assert refused(http_server, b"<rss><<<>>>&&&</rss>").reason == "malformed"


def test_empty_feed_is_fine(http_server: LocalServer) -> None:
    feed = serve(http_server, rss("", channel="<title>Quiet</title>").encode())
    assert (feed.title, feed.entries, feed.skipped, feed.warning) == ("Quiet", [], [], None)
    atom = b'<feed xmlns="http://www.w3.org/2005/Atom"><title>A</title></feed>'
    assert serve(http_server, atom, "application/atom+xml").entries == []


def test_entries_without_links_are_skipped(http_server: LocalServer) -> None:
    body = rss(item("nolink", None, "No link here") + item(None, None, "Neither") + item("ok", "http://e.com/1")
               + item("blank", "   "))
    feed = serve(http_server, body.encode())
    assert [e.guid for e in feed.entries] == ["ok"]
    assert feed.skipped == [("nolink", "no_link"), ("Neither", "no_link"), ("blank", "no_link")]


def test_relative_links_are_resolved_against_the_final_url(http_server: LocalServer) -> None:
    http_server.routes["/old-feed"] = Response(b"", "text/plain", 301, {"Location": "/news/feed.xml"})
    body = rss(item("1", "/articles/1") + item("2", "2.html") + item("3", "../up/3")
               + item("4", "//cdn.example.com/4") + item("5", "?page=5"))
    http_server.routes["/news/feed.xml"] = Response(body.encode(), "application/rss+xml")
    result = fetch(http_server.url("/old-feed"), kind="feed", settings=SETTINGS)
    feed = parse_feed(result.body, url=result.url, content_type=result.content_type)
    base = http_server.url("")
    assert [e.link for e in feed.entries] == [
        f"{base}/articles/1", f"{base}/news/2.html", f"{base}/up/3", "http://cdn.example.com/4",
        f"{base}/news/feed.xml?page=5",
    ]


def test_guid_permalink_is_used_as_link(http_server: LocalServer) -> None:
    body = rss("<item><title>x</title><guid>https://e.com/permalink</guid></item>")
    assert serve(http_server, body.encode()).entries[0].link == "https://e.com/permalink"


def test_duplicate_guids_keep_the_first(http_server: LocalServer) -> None:
    body = rss(item("same", "http://e.com/1", "first") + item("other", "http://e.com/2")
               + item("same", "http://e.com/3", "second"))
    feed = serve(http_server, body.encode())
    assert [(e.guid, e.title) for e in feed.entries] == [("same", "first"), ("other", "t")]
    assert feed.skipped == [("same", "duplicate_guid")]


@pytest.mark.parametrize(("link", "reason"), [
    ("javascript:alert(1)", "bad_scheme"), ("ftp://e.com/file", "bad_scheme"),
    ("mailto:x@e.com", "bad_scheme"), ("data:text/html,hi", "bad_scheme"), ("file:///etc/passwd", "bad_scheme"),
    ("http://exa mple.com/", "invalid_url"), ("http://:80/x", "invalid_url"), ("https:", "invalid_url"),
    ("http://e.com:99999/", "invalid_url"), ("http://" + "a" * 5000 + ".com/", "invalid_url"),
    ("http://[broken/", "no_link"),  # feedparser drops an unparsable href altogether
])
def test_bad_links_are_skipped(http_server: LocalServer, link: str, reason: str) -> None:
    body = rss(item("bad", link) + item("good", "http://e.com/ok"))
    feed = serve(http_server, body.encode())
    assert [e.link for e in feed.entries] == ["http://e.com/ok"]
    assert feed.skipped == [("bad", reason)]


def test_dates_are_utc_iso_or_none(http_server: LocalServer) -> None:
    body = rss(item("a", "http://e.com/a", extra="<pubDate>Tue, 10 Jun 2003 04:00:00 GMT</pubDate>")
               + item("b", "http://e.com/b", extra="<pubDate>not a date</pubDate>")
               + item("c", "http://e.com/c", extra="<pubDate>Fri, 31 Dec 1999 23:00:00 -0500</pubDate>"))
    assert [e.published for e in serve(http_server, body.encode()).entries] == [
        "2003-06-10T04:00:00+00:00", None, "2000-01-01T04:00:00+00:00"]


def test_billion_laughs_and_external_entities(http_server: LocalServer) -> None:
    entities = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    bomb = (f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY l0 "lol">{entities}'
            '<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            '<rss version="2.0"><channel><title>&l9;</title>'
            + item("a", "http://e.com/a", "&xxe;") + "</channel></rss>")
    feed = serve(http_server, bomb.encode())
    # expanded, the title would be a billion characters long (and the test would not finish)
    assert len(feed.title) < 1000 and "root:" not in feed.entries[0].title


def test_html_to_text() -> None:
    assert html_to_text("<p>a</p><p>b&amp;c</p><style>p{}</style><script>x()</script>&nbsp;d") == "a b&c d"
    assert html_to_text("") == ""


def test_bare_guid_is_not_taken_for_a_link() -> None:
    body = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
            b"<item><title>a</title><guid>abc123</guid></item>"
            b"<item><title>b</title><guid>http://example.com/story/2</guid></item></channel></rss>")
    parsed = parse_feed(body, url="http://example.com/news/feed.xml")
    assert [e.link for e in parsed.entries] == ["http://example.com/story/2"]
    assert parsed.skipped[0][1] == "no_link"


# --- parse_feed on its own: the details a feed's fields go through ----------------------------------------------

BASE = "http://example.com/news/feed.xml"
ATOM = 'xmlns:atom="http://www.w3.org/2005/Atom"'


def parsed(body: str) -> ParsedFeed:
    return parse_feed(body.encode(), url=BASE)


def test_websub_hub_and_self_are_the_first_usable_ones_made_absolute() -> None:
    channel = ("<title>t</title>"
               '<atom:link rel="alternate" href="http://example.com/"/>'
               '<atom:link rel="hub" href="javascript:alert(1)"/>'
               '<atom:link rel="hub" href="http://hub.example/with space"/>'
               f'<atom:link rel="hub" href="http://hub.example/{"x" * 4100}"/>'
               '<atom:link rel="hub" href="/websub/hub"/>'
               '<atom:link rel="hub" href="https://second.example/hub"/>'
               '<atom:link rel="self" href="HTTPS://example.com/news/feed.xml"/>')
    feed = parsed(rss(item("a", "http://example.com/a"), channel=channel, extra_ns=" " + ATOM))
    assert feed.hub == "http://example.com/websub/hub"
    assert feed.self_url == "HTTPS://example.com/news/feed.xml"


def test_a_feed_without_hub_links_has_none() -> None:
    feed = parsed(rss(item("a", "http://example.com/a"), channel='<title>t</title><atom:link rel="self" href="'
                      'ftp://example.com/f"/>', extra_ns=" " + ATOM))
    assert (feed.hub, feed.self_url) == (None, None)


def test_an_entrys_link_may_come_from_its_alternate_link_element() -> None:
    atom = ('<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
            '<entry><id>1</id><title>a</title><link rel="enclosure" href="http://example.com/a.mp3"/>'
            '<link href="http://example.com/a"/></entry>'
            '<entry><id>2</id><title>b</title><link rel="enclosure" href="http://example.com/b.mp3"/></entry>'
            "</feed>")
    feed = parsed(atom)
    assert [e.link for e in feed.entries] == ["http://example.com/a"]
    assert feed.skipped == [("http://example.com/news/2", "no_link")]  # feedparser resolves the id


def test_link_length_limit_and_control_characters() -> None:
    ok = "http://example.com/" + "a" * (4096 - len("http://example.com/"))
    feed = parsed(rss(item("a", ok) + item("b", ok + "a") + item("c", "http://example.com/a&#127;b")))
    assert [e.link for e in feed.entries] == [ok]
    assert feed.skipped == [("b", "invalid_url"), ("c", "invalid_url")]


def test_summary_falls_back_to_the_entry_content_as_text() -> None:
    atom = ('<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
            '<entry><id>1</id><title>a</title><link href="http://example.com/a"/>'
            '<content type="html">&lt;p&gt;First &lt;b&gt;bold&lt;/b&gt; words&lt;/p&gt;</content></entry>'
            '<entry><id>2</id><title>b</title><link href="http://example.com/b"/></entry></feed>')
    assert [e.summary for e in parsed(atom).entries] == ["First bold words", ""]


def test_an_empty_summary_gives_way_to_the_content_read_as_its_type_says() -> None:
    atom = ('<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
            '<entry><id>1</id><title>a</title><link href="http://example.com/a"/><summary></summary>'
            '<content type="text">plain &lt;b&gt; not a tag   here</content></entry>'
            '<entry><id>2</id><title>b</title><link href="http://example.com/b"/><summary></summary>'
            '<content type="html">&lt;p&gt;a &lt;b&gt;tag&lt;/b&gt;&lt;/p&gt;</content></entry></feed>')
    assert [e.summary for e in parsed(atom).entries] == ["plain <b> not a tag here", "a tag"]


def test_skip_hours_24_is_midnight_and_beyond_is_ignored() -> None:
    hours = "".join(f"<hour>{h}</hour>" for h in (24, 25, 23))
    assert parsed(rss("", channel=f"<title>t</title><skipHours>{hours}</skipHours>")).skip_hours == {0, 23}


def test_a_bare_guid_written_as_a_url_with_an_ampersand_stands_in_for_the_link() -> None:
    body = rss('<item><title>a</title><guid>http://example.com/s?a=1&amp;b=2</guid></item>')
    assert [e.link for e in parsed(body).entries] == ["http://example.com/s?a=1&b=2"]


def test_feed_errors_say_what_is_wrong() -> None:
    with pytest.raises(FeedError) as info:
        parse_feed(b" \n", url=BASE)
    assert (info.value.reason, str(info.value)) == ("empty_body", "the feed body is empty")


def test_html_to_text_keeps_inline_markup_joined_and_nested_skips_hidden() -> None:
    assert html_to_text("a<b>b</b>c") == "abc"
    assert html_to_text("x<p>y</p>z") == "x y z"
    assert html_to_text("<noscript><script>s()</script>hidden</noscript>shown") == "shown"
    assert html_to_text("<template><b>x</b>leak</template>y") == "y"  # (script content is never parsed)


def test_a_feed_root_in_an_unknown_format_is_malformed_not_foreign() -> None:
    rdf = b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><item><title>x</title></item></rdf:RDF>'
    with pytest.raises(FeedError) as info:
        parse_feed(rdf, url=BASE)
    assert (info.value.reason, str(info.value)) == ("malformed", "feed could not be parsed: unknown format")


def test_a_body_of_letters_is_not_empty() -> None:
    with pytest.raises(FeedError) as info:
        parse_feed(b"XX", url=BASE)
    assert info.value.reason == "not_a_feed"


@pytest.mark.parametrize(("channel", "seconds"), [
    ("<ttl>0.5</ttl>", 30.0),
    ("<sy:updatePeriod>daily</sy:updatePeriod>", 86400.0),  # frequency 1 when not given
    ("<sy:updatePeriod>daily</sy:updatePeriod><sy:updateFrequency>often</sy:updateFrequency>", 86400.0),
    ("<sy:updatePeriod>daily</sy:updatePeriod><sy:updateFrequency>0.5</sy:updateFrequency>", 172800.0),
    ("<sy:updatePeriod>daily</sy:updatePeriod><sy:updateFrequency>0</sy:updateFrequency>", None),
])
def test_ttl_and_update_period_edges(channel: str, seconds: float | None) -> None:
    sy = ' xmlns:sy="http://purl.org/rss/1.0/modules/syndication/"'
    assert parsed(rss("", channel="<title>t</title>" + channel, extra_ns=sy)).ttl_seconds == seconds


def test_plain_text_titles_keep_angle_brackets_and_missing_titles_are_empty() -> None:
    atom = ('<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom">'
            '<entry><id>1</id><title type="text">a &lt;b&gt; c</title><link href="http://example.com/a"/></entry>'
            '<entry><id>2</id><link href="http://example.com/b"/></entry></feed>')
    feed = parsed(atom)
    assert feed.title == "" and [e.title for e in feed.entries] == ["a <b> c", ""]


@pytest.mark.parametrize("content_type", ['text/xml; charset="windows-1251"', "text/xml;format=x;charset=windows-1251",
                                          "text/xml; charset=windows-1251; x=y"])
def test_the_charset_parameter_is_found_wherever_it_is(content_type: str) -> None:
    """A body without an XML declaration in a charset feedparser would not guess (it falls back to
    windows-1252): only the header's charset parameter, quoted or not, first or not, decodes it."""
    body = ('<rss version="2.0"><channel><title>t</title>' + item("a", "http://example.com/a", title="Привет")
            + "</channel></rss>").encode("cp1251")
    assert parse_feed(body, url=BASE, content_type="text/xml").entries[0].title != "Привет"
    assert parse_feed(body, url=BASE, content_type=content_type).entries[0].title == "Привет"


def test_hub_links_at_the_length_limit_and_after_an_unparsable_one() -> None:
    at_limit = "http://hub.example/" + "h" * (4096 - len("http://hub.example/"))
    channel = f'<title>t</title><atom:link rel="hub" href="{at_limit}"/>'
    assert parsed(rss("", channel=channel, extra_ns=" " + ATOM)).hub == at_limit
    channel = '<title>t</title><atom:link rel="hub" href="http://[bad/"/><atom:link rel="hub" href="http://h.example/"/>'
    assert parsed(rss("", channel=channel, extra_ns=" " + ATOM)).hub == "http://h.example/"


def test_refusals_say_what_the_body_was() -> None:
    """The message a dead letter and the logs carry: what was wrong, and feedparser's own complaint if any."""
    for body, reason, message in [
        (b"<html><body>x</body></html>", "not_a_feed", "not an RSS/Atom feed: unknown format"),
        (b"hello world", "not_a_feed", "not an RSS/Atom feed: SAXParseException: "),
        (b'<rss version="2.0"><channel><ite', "malformed", "feed could not be parsed: SAXParseException: "),
    ]:
        with pytest.raises(FeedError) as info:
            parse_feed(body, url=BASE)
        assert info.value.reason == reason and str(info.value).startswith(message), str(info.value)


def test_skipped_entries_are_named_by_guid_else_link() -> None:
    body = rss(item("g", "http://example.com/a") + item("g", "http://example.com/b")
               + item("h", "http://example.com/c") + item(None, "javascript:x()"))
    feed = parsed(body)
    assert [e.link for e in feed.entries] == ["http://example.com/a", "http://example.com/c"]
    assert feed.skipped == [("g", "duplicate_guid"), ("javascript:x()", "bad_scheme")]


def test_a_broken_feed_that_still_has_a_title_is_kept_with_a_warning() -> None:
    feed = parsed('<?xml version="1.0"?><rss version="2.0"><channel><title>Still here</title><descr')
    assert (feed.title, feed.entries) == ("Still here", [])
    assert feed.warning is not None and feed.warning.startswith("SAXParseException: ")
