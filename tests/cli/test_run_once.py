"""``ingest run --once`` as a user runs it: every feed it was given is polled (a busy host's feeds are polled
again within the run), bad entries of the list are reported and skipped while the good feeds are ingested,
anything left undone is a non-zero exit, and a terminal gets live progress while a pipe gets only the summary."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import redis

from worker.demo.server import LocalServer
from worker.demo.site import DemoSite, build_many
from worker.feeds.feedlist import Feed, save_feeds
from worker.net.politeness import Politeness, host_of

STRICT_HOST = {"INGEST_HOST_CONCURRENCY": "1", "INGEST_HOST_RATE": "0", "INGEST_HOST_WAIT_MAX": "0.5",
               "INGEST_CLEAN_HOLD_SECONDS": "0"}


def ingest(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=os.environ | (env or {}))


def sections(server: LocalServer, n: int, articles: int) -> list[DemoSite]:
    """A site with one feed per section, all on one host (the local server)."""
    sites = build_many(server.url(""), n, articles, seed=14)
    for site in sites:
        server.routes.update(site.routes)
    return sites


def _pause_key(host: str) -> str:
    from worker.net.politeness import _keys

    return _keys(host)[2]


def published(r: redis.Redis) -> list[dict[str, object]]:
    return [json.loads(fields[b"data"]) for _, fields in r.xrange("articles")]


def test_every_feed_of_a_busy_host_is_polled(redis_client: redis.Redis, http_server: LocalServer,
                                             tmp_path: Path) -> None:
    sites = sections(http_server, 4, 3)
    feeds = tmp_path / "feeds.yaml"
    save_feeds(feeds, [Feed(url=s.feed_url, name=f"section {i}") for i, s in enumerate(sites)])
    # The host is busy when the run starts (another client's Retry-After, say): each first poll is put off...
    host = host_of(http_server.url(""))
    Politeness(redis_client).pause(host, 600)
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "run", "--once", "--feeds", str(feeds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ | STRICT_HOST)
    try:
        deadline = time.monotonic() + 120
        while int(redis_client.hget("ingest:stats", "polled:deferred") or 0) < 4:
            assert time.monotonic() < deadline and proc.poll() is None, "the four polls were not put off"
            time.sleep(0.2)
        redis_client.delete(_pause_key(host))  # ...until the host frees up
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(out)
    assert summary["finished"] and summary["counts"]["published:articles"] == 12, summary
    assert len(published(redis_client)) == 12
    assert summary["counts"]["polled:deferred"] >= 4 and summary["pending"] == {"feeds": 0, "pages": 0}
    for row in summary["feed_outcomes"]:
        assert row["outcome"] == "new_entries" and row["new"] == 3 and row["deferred"] >= 1, row


def test_a_run_that_cannot_finish_says_what_is_left(redis_client: redis.Redis, http_server: LocalServer,
                                                    tmp_path: Path) -> None:
    sites = sections(http_server, 2, 1)
    feeds = tmp_path / "feeds.yaml"
    save_feeds(feeds, [Feed(url=s.feed_url) for s in sites])
    Politeness(redis_client).pause(host_of(http_server.url("")), 600)  # busy for longer than the run may take
    done = ingest("run", "--once", "--feeds", str(feeds), "--timeout", "4", env=STRICT_HOST)
    assert done.returncode == 1, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert not summary["finished"] and summary["pending"]["feeds"] == 2
    assert {row["outcome"] for row in summary["feed_outcomes"]} == {"pending"}
    assert "error: run not finished, the 4 s --timeout passed: 2 feeds and 0 pages still pending" in done.stderr


def test_bad_entries_are_skipped_and_the_good_feeds_ingested(redis_client: redis.Redis, http_server: LocalServer,
                                                            tmp_path: Path) -> None:
    good = sections(http_server, 2, 2)
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(
        "feeds:\n"
        f"  - url: {good[0].feed_url}\n"
        "  - url: \"not a url\"\n"
        "    name: typo\n"
        "  - url: ftp://files.example.com/feed.xml\n"
        f"  - url: {good[1].feed_url}\n"
        "    interval: soon\n"
        f"  - {good[1].feed_url}\n"
    )
    done = ingest("run", "--once", "--feeds", str(feeds))
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["finished"] and summary["feeds"] == 2 and len(published(redis_client)) == 4, summary
    assert summary["invalid_entries"] == [
        f"{feeds}:3: feed #2: url: not an http(s) URL: 'not a url'",
        f"{feeds}:5: feed #3: url: not an http(s) URL: 'ftp://files.example.com/feed.xml'",
        f"{feeds}:6: feed #4: interval: Input should be a valid number, unable to parse string as a number",
    ]
    for problem in summary["invalid_entries"]:
        assert done.stderr.count(problem) == 1, done.stderr[-3000:]  # reported once each

    listed = ingest("feeds", "list", "--feeds", str(feeds), "--json", timeout=60)
    assert listed.returncode == 0, listed.stderr
    states = [(row["url"], row["state"]["status"]) for row in map(json.loads, listed.stdout.splitlines())]
    assert states == [(good[0].feed_url, "ok"), ("not a url", "invalid"), ("ftp://files.example.com/feed.xml",
                      "invalid"), (good[1].feed_url, "invalid"), (good[1].feed_url, "ok")]

    checked = ingest("feeds", "check", str(feeds), timeout=60)
    assert checked.returncode == 1 and checked.stdout.splitlines() == summary["invalid_entries"]
    assert "3 invalid entries" in checked.stderr
    ok_list = tmp_path / "ok.yaml"
    save_feeds(ok_list, [Feed(url=good[0].feed_url)])
    fine = ingest("feeds", "check", str(ok_list), timeout=60)
    assert fine.returncode == 0 and fine.stdout == "" and "1 feeds, all valid" in fine.stderr

    # an edit keeps the bad entries for whoever fixes them; `remove` takes one off by its url as written
    assert ingest("feeds", "add", "http://example.com/new.xml", "--feeds", str(feeds), timeout=60).returncode == 0
    assert ingest("feeds", "remove", "not a url", "--feeds", str(feeds), timeout=60).returncode == 0
    again = ingest("feeds", "check", str(feeds), timeout=60)
    assert [line.split(": ", 2)[2] for line in again.stdout.splitlines()] == [
        "url: not an http(s) URL: 'ftp://files.example.com/feed.xml'",
        "interval: Input should be a valid number, unable to parse string as a number"]


def _read_terminal(fd: int, proc: subprocess.Popen[bytes], deadline: float) -> bytes:
    out = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the terminal's other end closed: the command is done
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


def test_live_progress_on_a_terminal_only(redis_client: redis.Redis, http_server: LocalServer,
                                          tmp_path: Path) -> None:
    sites = sections(http_server, 2, 2)
    feeds = tmp_path / "feeds.yaml"
    save_feeds(feeds, [Feed(url=s.feed_url) for s in sites])
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "run", "--once", "--feeds", str(feeds)],
                            stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
                            env=os.environ | {"COLUMNS": "160"})
    os.close(follower)
    try:
        screen = _read_terminal(leader, proc, time.monotonic() + 240).decode(errors="replace")
        assert proc.wait(60) == 0, screen[-3000:]
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    assert "feeds polled" in screen and "pages done" in screen and "published 4" in screen, screen[-3000:]
    assert "finished in" in screen and "pages: 4 published" in screen, screen[-3000:]  # a summary for a person
    assert '"feed_outcomes"' not in screen

    redis_client.delete("ingest:feeds:config")
    piped = ingest("run", "--once", "--feeds", str(feeds))  # stdout and stderr are pipes: only the summary
    assert piped.returncode == 0 and "feeds polled" not in piped.stderr and "pages done" not in piped.stderr
    assert json.loads(piped.stdout)["finished"]


def test_a_disabled_feed_is_named_and_not_polled(redis_client: redis.Redis, http_server: LocalServer,
                                                tmp_path: Path) -> None:
    on, off = sections(http_server, 2, 2)
    feeds = tmp_path / "feeds.yaml"
    save_feeds(feeds, [Feed(url=on.feed_url), Feed(url=off.feed_url, enabled=False)])
    done = ingest("run", "--once", "--feeds", str(feeds))
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["finished"] and summary["feeds"] == 1 and summary["disabled_feeds"] == [off.feed_url], summary
    assert sorted(str(a["url"]) for a in published(redis_client)) == sorted(on.article_url(a.slug)
                                                                            for a in on.articles)
    assert http_server.hits.get(off.feed_path, 0) == 0
