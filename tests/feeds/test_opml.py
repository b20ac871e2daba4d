"""OPML feed lists: folders and categories as tags, a round trip that keeps every per-feed setting, hostile
documents refused cleanly, bad entries skipped, and `ingest feeds import|export|add` on a real feeds file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from worker.demo.server import LocalServer, Response
from worker.feeds.feedlist import Feed, load_feeds, save_feeds
from worker.feeds.opml import SETTING_ATTRIBUTES, OpmlError, parse_opml, to_opml, unexportable_tags

# Every field set away from its default, plus a feed that sets nothing: what a round trip must keep.
FULL = Feed(url="https://news.example/world/rss.xml", name="World desk", enabled=False, interval=90.0,
            min_interval=30.5, max_interval=3600.0, tags=("world", "politics"), route="articles.world",
            language="fr", robots=False, retry_after_scope="host")
BARE = Feed(url="http://blog.example/feed")
NESTED = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
  <head><title>Reader export</title></head>
  <body>
    <outline text="News">
      <outline text="Europe" title="Europe">
        <outline type="rss" text="Paris Daily" title="Paris Daily (feed)" xmlUrl="https://paris.example/feed.xml"
                 htmlUrl="https://paris.example/" category="/Cities/Paris,local"/>
      </outline>
      <outline type="rss" title="Only a title" xmlURL="https://wire.example/atom"/>
    </outline>
    <outline text="Tech">
      <!-- the same feed in a second folder -->
      <outline type="rss" text="Paris Daily again" xmlurl="https://paris.example/feed.xml#top"/>
    </outline>
    <outline type="rss" text="https://loose.example/rss" xmlUrl="https://loose.example/rss"/>
  </body>
</opml>"""


def test_folders_and_categories_become_tags() -> None:
    result = parse_opml(NESTED)
    assert result.feeds == [
        Feed(url="https://paris.example/feed.xml", name="Paris Daily",
             tags=("News", "Europe", "Cities", "Paris", "local", "Tech")),
        Feed(url="https://wire.example/atom", name="Only a title", tags=("News",)),
        Feed(url="https://loose.example/rss"),  # text that only repeats the URL is no name
    ]
    assert result.skipped == [("https://paris.example/feed.xml#top",
                               "listed more than once: kept the first, with every listing's tags")]


def test_round_trip_keeps_every_feed_setting() -> None:
    # A Feed field that OPML does not carry would be silently dropped by export: name it here or map it.
    assert set(Feed.model_fields) == {"url", "name", "tags"} | set(SETTING_ATTRIBUTES)
    feeds = [FULL, BARE]
    data = to_opml(feeds)
    assert parse_opml(data).feeds == feeds
    assert to_opml(parse_opml(data).feeds) == data  # deterministic: no dates, same bytes again

    root = etree.fromstring(data)
    assert root.get("version") == "2.0" and root.findtext("head/title")
    full, bare = root.findall("body/outline")
    assert dict(full.attrib) == {
        "text": "World desk", "title": "World desk", "type": "rss", "xmlUrl": FULL.url,
        "category": "world,politics", "language": "fr", "enabled": "false", "interval": "90",
        "minInterval": "30.5", "maxInterval": "3600", "route": "articles.world", "robots": "false",
        "retryAfterScope": "host",
    }
    assert dict(bare.attrib) == {"text": BARE.url, "type": "rss", "xmlUrl": BARE.url}  # defaults not written


def test_save_feeds_keeps_every_feed_setting(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    save_feeds(path, [FULL, BARE])
    assert load_feeds(path) == [FULL, BARE]


def test_tags_with_category_separators_are_reported() -> None:
    feed = Feed(url="http://a.example/rss", tags=("plain", "a/b", "c,d"))
    assert unexportable_tags(feed) == ["a/b", "c,d"]
    assert parse_opml(to_opml([feed])).feeds[0].tags == ("plain", "a", "b", "c", "d")


def test_encoding_comes_from_the_document() -> None:
    latin = ('<?xml version="1.0" encoding="ISO-8859-1"?><opml version="1.0"><body>'
             '<outline text="Café Économie" xmlUrl="http://cafe.example/rss"/></body></opml>').encode("latin-1")
    assert parse_opml(latin).feeds[0].name == "Café Économie"
    utf16 = ('<?xml version="1.0" encoding="UTF-16"?><opml version="2.0"><body>'
             '<outline text="Ελληνικά" xmlUrl="http://gr.example/rss"/></body></opml>').encode("utf-16")
    assert parse_opml(utf16).feeds[0].name == "Ελληνικά"
    with pytest.raises(TypeError):
        parse_opml(latin.decode("latin-1"))  # type: ignore[arg-type]


def test_bad_entries_are_skipped_with_reasons() -> None:
    doc = b"""<opml version="2.0"><body>
      <outline text="good" xmlUrl="http://good.example/rss" minInterval="60"/>
      <outline text="website only" type="link" url="http://site.example/"/>
      <outline text="ftp" xmlUrl="ftp://files.example/feed"/>
      <outline text="nonsense" xmlUrl="not a url"/>
      <outline text="slow" xmlUrl="http://slow.example/rss" minInterval="soon"/>
      <outline text="inverted" xmlUrl="http://inv.example/rss" minInterval="600" maxInterval="60"/>
      <outline text="flag" xmlUrl="http://flag.example/rss" enabled="maybe"/>
      <outline text="scope" xmlUrl="http://scope.example/rss" retryAfterScope="planet"/>
    </body></opml>"""
    result = parse_opml(doc)
    assert result.feeds == [Feed(url="http://good.example/rss", name="good", min_interval=60)]
    reasons = dict(result.skipped)
    assert reasons["website only"] == "no xmlUrl: not a feed"
    assert reasons["ftp://files.example/feed"].startswith("xmlUrl: not an http(s) URL")
    assert reasons["not a url"].startswith("xmlUrl: ")
    assert reasons["http://slow.example/rss"].startswith("minInterval: ")
    assert reasons["http://inv.example/rss"] == "outline: min_interval is larger than max_interval"
    assert reasons["http://flag.example/rss"].startswith("enabled: ")
    assert reasons["http://scope.example/rss"].startswith("retryAfterScope: ")
    assert len(result.skipped) == 7


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE opml [
 <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"> <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
 <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"> <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
 <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;"> <!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">
 <!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;"> <!ENTITY i "&h;&h;&h;&h;&h;&h;&h;&h;&h;&h;">
]>
<opml version="2.0"><body><outline text="&i;" xmlUrl="http://laughs.example/rss"/></body></opml>"""


ENTITIES = "^the document declares XML entities, which OPML never needs; refused$"


@pytest.mark.parametrize(("doc", "message"), [
    (b"", "^the OPML document is empty$"),
    (b" \n\t", "^the OPML document is empty$"),
    (b"this is not xml at all", "^not well-formed XML: "),
    (b"<opml version='2.0'><body><outline text='x'", "^not well-formed XML: "),
    (b"<html><body><p>a web page</p></body></html>", "^not an OPML document: the root element is <html>$"),
    (b"<opml version='2.0'><head/></opml>", "^not an OPML document: no <body>$"),
    # libxml2 itself stops the expansion (its amplification limit), else our check refuses the declarations
    (BILLION_LAUGHS, "^(not well-formed XML: .*entity amplification|the document declares XML entities)"),
    # declared but unused entities are refused too: OPML has no use for them
    (b"<!DOCTYPE opml [<!ENTITY x 'y'>]><opml version='2.0'><body/></opml>", ENTITIES),
    # nested deeper than libxml2's safe limit (huge_tree off): refused, not parsed
    (b"<opml version='2.0'><body>" + b"<outline text='f'>" * 300 + b"</outline>" * 300 + b"</body></opml>",
     "^not well-formed XML: .*[Ee]xcessive depth"),
], ids=["empty", "blank", "not-xml", "truncated", "html", "no-body", "billion-laughs", "entity-declared", "deep"])
def test_documents_that_are_not_opml_fail_cleanly(doc: bytes, message: str) -> None:
    """Each refusal is one line that names the problem: what the command line shows the user."""
    with pytest.raises(OpmlError, match=message):
        parse_opml(doc)


def test_only_bytes_are_parsed() -> None:
    with pytest.raises(TypeError, match=r"^parse_opml takes bytes, so that the document's own encoding declaration "
                                        r"applies$"):
        parse_opml("<opml/>")  # type: ignore[arg-type]


def test_outlines_that_are_not_feeds_are_reported_and_other_elements_skipped() -> None:
    doc = b"""<opml version="2.0"><body>
        <note>not an outline</note>
        <outline/>
        <outline text="   "/>
        <outline text="A folder"><outline type="rss" text="In it" xmlUrl="http://f.example/1"/></outline>
        <outline><outline type="rss" text="Untitled folder" xmlUrl="http://f.example/2"/></outline>
        <outline type="rss" text="Feed with notes" xmlUrl="http://f.example/3">
          <outline type="rss" text="Nested feed" xmlUrl="http://f.example/4"/>
          <outline text="a note"/>
        </outline>
    </body></opml>"""
    result = parse_opml(doc)
    assert [(f.url, f.name, f.tags) for f in result.feeds] == [
        ("http://f.example/1", "In it", ("A folder",)), ("http://f.example/2", "Untitled folder", ()),
        ("http://f.example/3", "Feed with notes", ()), ("http://f.example/4", "Nested feed", ())]
    assert result.skipped == [("(untitled outline)", "no xmlUrl: not a feed")] * 2 + [
        ("a note", "no xmlUrl: not a feed")]


def test_export_is_indented_utf8_opml_2_with_its_declaration() -> None:
    out = to_opml([Feed(url="http://z.example/rss", name="Zürich news", tags=("Schweiz",))])
    assert out.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<opml version=\"2.0\">\n  <head>\n"
                          b"    <title>news-ingest-worker feeds</title>\n  </head>\n  <body>\n    <outline ")
    assert "Zürich news".encode() in out and out.endswith(b"</opml>\n")


def test_external_entities_are_never_read(tmp_path: Path, http_server: LocalServer) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    http_server.routes["/evil.dtd"] = Response(b'<!ENTITY leak "LEAKED-OVER-HTTP">', "application/xml-dtd")
    refused = [
        f"""<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY xxe SYSTEM "file://{secret}">]>
            <opml version="2.0"><body><outline text="&xxe;" xmlUrl="http://x.example/rss"/></body></opml>""",
        f"""<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY xxe SYSTEM "file://{secret}">]>
            <opml version="2.0"><body><outline xmlUrl="http://x.example/rss">&xxe;</outline></body></opml>""",
        f"""<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY % remote SYSTEM "{http_server.url('/evil.dtd')}"> %remote;]>
            <opml version="2.0"><body><outline text="&leak;" xmlUrl="http://x.example/rss"/></body></opml>""",
    ]
    for doc in refused:
        with pytest.raises(OpmlError, match="entit") as caught:
            parse_opml(doc.encode())
        assert "TOP-SECRET" not in str(caught.value)
    # An external DTD is neither fetched nor trusted: the entity it would define stays undefined.
    remote = f"""<?xml version="1.0"?><!DOCTYPE opml SYSTEM "{http_server.url('/evil.dtd')}">
        <opml version="2.0"><body><outline text="&leak;" xmlUrl="http://x.example/rss"/></body></opml>"""
    result = parse_opml(remote.encode())
    assert result.feeds == [Feed(url="http://x.example/rss")] and "LEAKED" not in repr(result)
    assert http_server.hits == {}  # no_network: nothing was requested


def test_a_plain_external_dtd_is_ignored(http_server: LocalServer) -> None:
    doc = f"""<?xml version="1.0"?><!DOCTYPE opml SYSTEM "{http_server.url('/opml.dtd')}">
        <opml version="1.0"><body><outline text="ok" xmlUrl="http://ok.example/rss"/></body></opml>"""
    assert parse_opml(doc.encode()).feeds == [Feed(url="http://ok.example/rss", name="ok")]
    assert http_server.hits == {}


# --- the command line, on a real feeds file ----------------------------------------------------------------------


def ingest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, timeout=120,
                          env=os.environ | {"INGEST_LOG_FORMAT": "json"})


def test_cli_export_then_import_gives_the_same_list(tmp_path: Path) -> None:
    source, target, opml = tmp_path / "source.yaml", tmp_path / "target.yaml", tmp_path / "list.opml"
    save_feeds(source, [FULL, BARE])
    out = ingest("feeds", "export", "--feeds", str(source), "--output", str(opml))
    assert out.returncode == 0, out.stderr
    stdout = ingest("feeds", "export", "--feeds", str(source))
    assert stdout.returncode == 0 and stdout.stdout.encode() == opml.read_bytes()

    done = ingest("feeds", "import", str(opml), "--feeds", str(target))
    assert done.returncode == 0, done.stderr
    assert "added 2, skipped 0" in done.stdout
    assert load_feeds(target) == [FULL, BARE]

    again = ingest("feeds", "import", str(opml), "--feeds", str(target))
    assert again.returncode == 0 and "added 0, skipped 2" in again.stdout
    assert again.stderr.count("already listed") == 2
    assert load_feeds(target) == [FULL, BARE]


def test_cli_import_merges_and_keeps_listed_feeds_as_they_are(tmp_path: Path) -> None:
    feeds, opml = tmp_path / "feeds.yaml", tmp_path / "reader.opml"
    mine = Feed(url="https://paris.example/feed.xml", name="mine", interval=60, route="articles.paris")
    save_feeds(feeds, [mine])
    opml.write_bytes(NESTED)
    done = ingest("feeds", "import", str(opml), "--feeds", str(feeds))
    assert done.returncode == 0, done.stderr
    assert "added 2, skipped 2" in done.stdout  # the duplicate listing, and the feed already in the list
    assert "listed more than once" in done.stderr and "already listed" in done.stderr
    assert [f.url for f in load_feeds(feeds)] == [mine.url, "https://wire.example/atom", "https://loose.example/rss"]
    assert load_feeds(feeds)[0] == mine


def test_cli_import_refuses_a_hostile_file_and_leaves_the_list_alone(tmp_path: Path) -> None:
    feeds, opml = tmp_path / "feeds.yaml", tmp_path / "laughs.opml"
    save_feeds(feeds, [BARE])
    before = feeds.read_bytes()
    opml.write_bytes(BILLION_LAUGHS)
    done = ingest("feeds", "import", str(opml), "--feeds", str(feeds))
    assert done.returncode == 2 and "error:" in done.stderr and "Traceback" not in done.stderr
    assert feeds.read_bytes() == before
    missing = ingest("feeds", "import", str(tmp_path / "nope.opml"), "--feeds", str(feeds))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    feeds.write_text(f"feeds: [{{url: 'gopher://old.example/'}}, {{url: '{BARE.url}'}}]")
    partial = ingest("feeds", "export", "--feeds", str(feeds))  # a bad entry is left out, and said so
    assert partial.returncode == 0 and "feed #1: url: not an http(s) URL" in partial.stderr
    assert parse_opml(partial.stdout.encode()).feeds == [BARE]
    feeds.write_text("feeds: [{url: 'http://old.example/'}\n")
    broken = ingest("feeds", "export", "--feeds", str(feeds))
    assert broken.returncode == 2 and "not valid YAML" in broken.stderr and broken.stdout == ""
    assert "Traceback" not in broken.stderr


def test_cli_add_takes_every_feed_setting(tmp_path: Path) -> None:
    feeds = tmp_path / "feeds.yaml"
    done = ingest("feeds", "add", FULL.url, "--feeds", str(feeds), "--name", "World desk", "--interval", "90",
                  "--min-interval", "30.5", "--max-interval", "3600", "--tag", "world", "--tag", "politics",
                  "--route", "articles.world", "--language", "fr", "--disabled", "--no-robots",
                  "--retry-after-scope", "host")
    assert done.returncode == 0, done.stderr
    assert load_feeds(feeds) == [FULL]
    bad = ingest("feeds", "add", "http://other.example/rss", "--feeds", str(feeds), "--min-interval", "600",
                 "--max-interval", "60")
    assert bad.returncode == 2 and "min_interval is larger than max_interval" in bad.stderr
    assert "Traceback" not in bad.stderr and load_feeds(feeds) == [FULL]
