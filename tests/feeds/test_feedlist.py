"""The feed list file: each entry validated on its own, bad ones reported with where they are and skipped, kept
as written by edits; reloading on change; the shipped list."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.feeds.feedlist import (
    Feed,
    FeedList,
    FeedListError,
    Problem,
    load_feeds,
    parse_feed_list,
    read_feed_list,
    save_feeds,
)

ROOT = Path(__file__).resolve().parents[2]

MIXED = """\
# nine good feeds would do as well as two
feeds:
  - url: http://example.com/a.xml
    name: A
  - url: "not a url"
    name: typo
  - http://example.com/b.xml
  - url: ftp://example.com/c.xml
  - url: http://example.com/d.xml
    intervall: 60
  - 42
  - url: http://example.com/a.xml
    name: A again
  - url: http://example.com/e.xml
    interval: -1
"""


def test_bad_entries_are_reported_with_their_place_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(MIXED)
    checked = read_feed_list(path)
    assert [f.url for f in checked.feeds] == ["http://example.com/a.xml", "http://example.com/b.xml"]
    problems = [(p.entry, p.line, p.message) for p in checked.problems]
    assert problems == [
        (2, 5, "url: not an http(s) URL: 'not a url'"),
        (4, 8, "url: not an http(s) URL: 'ftp://example.com/c.xml'"),
        (5, 9, "intervall: unknown field"),
        (6, 11, "expected a mapping with 'url:' or a URL"),
        (7, 12, "same feed as feed #1, this listing is ignored"),
        (8, 14, "interval: Input should be greater than 0"),
    ]
    assert str(checked.problems[0]) == f"{path}:5: feed #2: url: not an http(s) URL: 'not a url'"
    assert [type(e) for e in checked.entries] == [Feed, Problem, Feed, Problem, Problem, Problem, Problem, Problem]


def test_strict_loading_names_every_bad_entry(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(MIXED)
    with pytest.raises(FeedListError) as raised:
        load_feeds(path)
    assert str(raised.value).count(": feed #") == 6


def test_only_an_unusable_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(FeedListError, match="does not exist"):
        read_feed_list(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("feeds:\n  - url: [unclosed\n")
    with pytest.raises(FeedListError, match=r"not valid YAML: .* at line 3, column 1"):
        read_feed_list(broken)
    with pytest.raises(FeedListError, match="expected a mapping with a 'feeds:' list"):
        parse_feed_list(["not", "a", "mapping"])
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert read_feed_list(empty).entries == []


def test_an_edit_keeps_the_bad_entries_as_written(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(MIXED)
    checked = read_feed_list(path)
    save_feeds(path, [*checked.entries, Feed(url="http://example.com/new.xml")])
    again = read_feed_list(path)
    assert [p.message for p in again.problems] == [p.message for p in checked.problems]
    assert [p.raw for p in again.problems] == [p.raw for p in checked.problems]
    assert [f.url for f in again.feeds] == ["http://example.com/a.xml", "http://example.com/b.xml",
                                            "http://example.com/new.xml"]


def test_feed_list_reloads_on_change(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    save_feeds(path, [Feed(url="http://example.com/a.xml", tags=("x",))])
    fl = FeedList(path)
    feeds, changed = fl.get()
    assert changed and feeds[0].tags == ("x",)
    assert fl.get()[1] is False
    save_feeds(path, [*feeds, Feed(url="http://example.com/b.xml", interval=60)])
    feeds, changed = fl.get()
    assert changed and len(feeds) == 2 and load_feeds(path) == feeds


def test_a_broken_file_raises_once_and_keeps_the_last_good_list(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    save_feeds(path, [Feed(url="http://example.com/a.xml")])
    fl = FeedList(path)
    good, _ = fl.get()
    path.write_text("feeds: [oops\n")
    with pytest.raises(FeedListError):
        fl.get()
    assert fl.get() == (good, False)  # reported once per edit, not at every dispatch tick
    path.unlink()
    with pytest.raises(FeedListError, match="does not exist"):
        fl.get()
    assert fl.get() == (good, False)
    path.write_text(MIXED)
    feeds, changed = fl.get()
    assert changed and len(feeds) == 2 and len(fl.problems) == 6


def test_shipped_feed_list_is_valid() -> None:
    feeds = load_feeds(ROOT / "config" / "feeds.yaml")
    assert len(feeds) >= 12
    assert len({f.language for f in feeds}) >= 4
