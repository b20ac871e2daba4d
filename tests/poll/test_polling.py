"""Polling against the real local server and the real Redis: conditional GET, the body-hash skip, server
signals (Cache-Control, Expires, Retry-After, ttl, skipHours), backoff and recovery, and the error state that
`ingest feeds list` and the metrics show."""

from __future__ import annotations

import json
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import redis

from tests.cli.test_cli import ingest
from worker.context import Context
from worker.core.settings import Settings
from worker.demo.server import LocalServer, Response
from worker.feeds.feedlist import Feed, save_feeds
from worker.poll import step as poll_step
from worker.poll.parse import parse_feed
from worker.poll.schedule import Schedule
from worker.poll.step import PollResult, commit_poll, poll

SETTINGS = Settings(allow_private_networks=True, min_interval=60, max_interval=86400, default_interval=900,
                    interval_jitter=0.0, backoff_base=60, backoff_max=3600, total_timeout=5)


def rss(n: int, *, step_minutes: int = 30, channel_extra: str = "", start: float | None = None,
        site: str = "s") -> bytes:
    """n items, one every ``step_minutes`` back from ``start`` (now), newest first."""
    start = time.time() if start is None else start
    items = "".join(
        f"<item><title>Story {i}</title><link>http://127.0.0.1/{site}/{i}.html</link><guid>{site}-{i}</guid>"
        f"<pubDate>{formatdate(start - i * step_minutes * 60, usegmt=True)}</pubDate></item>"
        for i in range(n))
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>T</title>{channel_extra}'
            f"{items}</channel></rss>").encode()


class Recorder:
    """A feed route that answers from a mutable Response and records the validators each request sent."""

    def __init__(self, server: LocalServer, path: str, resp: Response) -> None:
        self.resp = resp
        self.sent: list[tuple[str | None, str | None]] = []
        self._lock = threading.Lock()
        server.routes[path] = self

    def __call__(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.sent.append((handler.headers.get("If-None-Match"), handler.headers.get("If-Modified-Since")))
        handler._send(self.resp)  # type: ignore[attr-defined]


def poll_once(ctx: Context, feed: Feed) -> PollResult:
    result = poll(ctx, feed)
    commit_poll(ctx, result)
    return result


@pytest.fixture
def ctx(redis_client: redis.Redis) -> Context:
    return Context(redis_client, SETTINGS)


def test_validators_are_sent_back_verbatim_and_replaced_only_on_200(
        ctx: Context, http_server: LocalServer) -> None:
    etag, lastmod = 'W/"v1:a b"', "Tue, 03 Nov 2026 10:00:00 GMT"
    rec = Recorder(http_server, "/f.xml", Response(rss(3), "application/rss+xml",
                                                   headers={"ETag": etag, "Last-Modified": lastmod}))
    feed = Feed(url=http_server.url("/f.xml"))
    ctx.schedule.sync([feed])
    assert poll_once(ctx, feed).outcome == "new_entries"
    assert poll_once(ctx, feed).outcome == "not_modified"
    assert rec.sent == [(None, None), (etag, lastmod)]
    rec.resp = Response(b"busy", "text/plain", 503)  # a failure keeps the validators
    assert poll_once(ctx, feed).outcome == "error"
    rec.resp = Response(rss(4), "application/rss+xml", headers={"ETag": '"v2"'})
    assert poll_once(ctx, feed).outcome == "new_entries"
    assert poll_once(ctx, feed).outcome == "not_modified"
    assert rec.sent[2:] == [(etag, lastmod), (etag, lastmod), ('"v2"', None)]  # the 200 replaced both


def test_unchanged_body_without_validators_is_not_parsed(
        ctx: Context, http_server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    http_server.routes["/plain.xml"] = Response(rss(3), "application/rss+xml")
    feed = Feed(url=http_server.url("/plain.xml"))
    ctx.schedule.sync([feed])
    parses: list[str] = []

    def counting(body: bytes, **kw: str | None) -> object:
        parses.append(kw["url"] or "")
        return parse_feed(body, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(poll_step, "parse_feed", counting)
    assert poll_once(ctx, feed).outcome == "new_entries"
    assert poll_once(ctx, feed).outcome == "unchanged"
    assert poll_once(ctx, feed).outcome == "unchanged"
    assert len(parses) == 1
    http_server.routes["/plain.xml"] = Response(rss(4), "application/rss+xml")
    result = poll_once(ctx, feed)
    assert result.outcome == "new_entries" and len(result.jobs) == 1 and len(parses) == 2


@pytest.mark.parametrize(("headers", "at_least"), [
    ({"Cache-Control": "public, max-age=7200"}, 7200),
    ({"Cache-Control": "max-age=7200", "Age": "3600"}, 3600),
    ({"Expires": "+10800"}, 10_700),  # written as an HTTP date when served
    ({"Cache-Control": "no-cache, max-age=7200"}, None),
])
def test_cache_headers_stretch_the_interval(ctx: Context, http_server: LocalServer,
                                           headers: dict[str, str], at_least: float | None) -> None:
    if headers.get("Expires", "").startswith("+"):
        headers = headers | {"Expires": formatdate(time.time() + float(headers["Expires"]), usegmt=True)}
    http_server.routes["/c.xml"] = Response(rss(2, step_minutes=1), "application/rss+xml", headers=headers)
    feed = Feed(url=http_server.url("/c.xml"))
    ctx.schedule.sync([feed])
    before = time.time()
    poll_once(ctx, feed)
    delay = float(ctx.schedule.describe(feed.id)["next_due"]) - before
    if at_least is None:
        assert delay < 600  # no-cache: the feed's own rate (two entries a minute apart) decides
    else:
        assert at_least <= delay <= at_least + 300


def test_ttl_and_skip_hours_from_the_feed(ctx: Context, http_server: LocalServer) -> None:
    """Every hour but one is skipped: the next poll lands at the start of that hour (UTC), at whatever hour
    the test runs. The open hour is read from the clock once, three hours ahead, so an hour that turns while
    the test runs still leaves it the first one allowed."""
    started = time.time()
    open_hour = (time.gmtime(started).tm_hour + 3) % 24
    every_hour_but_one = "".join(f"<hour>{h}</hour>" for h in range(24) if h != open_hour)
    http_server.routes["/s.xml"] = Response(
        rss(2, channel_extra=f"<ttl>45</ttl><skipHours>{every_hour_but_one}</skipHours>"), "application/rss+xml",
        headers={"ETag": '"s"'})
    feed = Feed(url=http_server.url("/s.xml"))
    ctx.schedule.sync([feed])
    poll_once(ctx, feed)
    next_due = float(ctx.schedule.describe(feed.id)["next_due"])
    assert time.gmtime(next_due).tm_hour == open_hour
    assert next_due % 3600 == 0 and 0 < next_due - started <= 3 * 3600  # the start of that hour
    assert poll_once(ctx, feed).outcome == "not_modified"  # a 304 keeps obeying the skips
    assert float(ctx.schedule.describe(feed.id)["next_due"]) == next_due


def test_interval_adapts_to_the_feeds_real_rate(ctx: Context, http_server: LocalServer) -> None:
    http_server.routes["/busy.xml"] = Response(rss(20, step_minutes=5), "application/rss+xml")
    http_server.routes["/slow.xml"] = Response(rss(5, step_minutes=180, site="slow"), "application/rss+xml")
    busy, slow = Feed(url=http_server.url("/busy.xml")), Feed(url=http_server.url("/slow.xml"))
    ctx.schedule.sync([busy, slow])
    poll_once(ctx, busy)
    poll_once(ctx, slow)
    assert float(ctx.schedule.describe(busy.id)["interval"]) == pytest.approx(300, abs=1)
    assert float(ctx.schedule.describe(slow.id)["interval"]) == pytest.approx(3 * 3600, abs=1)


def test_503_retry_after_as_a_date_stretches_the_backoff(ctx: Context, http_server: LocalServer) -> None:
    http_server.routes["/down.xml"] = Response(b"maintenance", "text/plain", 503,
                                               headers={"Retry-After": formatdate(time.time() + 7200, usegmt=True)})
    feed = Feed(url=http_server.url("/down.xml"))
    ctx.schedule.sync([feed])
    before = time.time()
    assert poll_once(ctx, feed).outcome == "error"
    state = ctx.schedule.describe(feed.id)
    assert state["last_error"] == "http_5xx" and 7000 <= float(state["next_due"]) - before <= 7300


def test_429_retry_after_backoff_recovery_and_visibility(ctx: Context, http_server: LocalServer,
                                                        redis_client: redis.Redis, redis_url: str,
                                                        tmp_path: Path) -> None:
    rec = Recorder(http_server, "/limited.xml",
                   Response(b"slow down", "text/plain", 429, headers={"Retry-After": "5000"}))
    feed, good = Feed(url=http_server.url("/limited.xml"), name="Limited"), Feed(url=http_server.url("/ok.xml"))
    http_server.routes["/ok.xml"] = Response(rss(1), "application/rss+xml")
    schedule = Schedule(redis_client, SETTINGS)
    schedule.sync([feed, good])
    for _ in range(2):
        assert poll_once(ctx, feed).outcome == "error"
    poll_once(ctx, good)
    state = schedule.describe(feed.id)
    assert state["errors"] == "2" and state["last_error"] == "http_4xx"
    assert float(state["next_due"]) - time.time() >= 4900  # Retry-After beats the 120 s backoff

    path = tmp_path / "feeds.yaml"
    save_feeds(path, [feed, good, Feed(url=http_server.url("/off.xml"), enabled=False)])
    listed = ingest("feeds", "list", "--feeds", str(path), "--json", env={"REDIS_URL": redis_url})
    rows = {row["url"]: row["state"] for row in map(json.loads, listed.stdout.splitlines())}
    assert rows[feed.url]["status"] == "failing" and rows[feed.url]["errors"] == 2
    assert rows[feed.url]["last_error"] == "http_4xx" and rows[feed.url]["next_poll_in"] >= 4900
    assert rows[good.url]["status"] == "ok" and rows[http_server.url("/off.xml")]["status"] == "disabled"
    text = ingest("feeds", "list", "--feeds", str(path), env={"REDIS_URL": redis_url}).stdout
    assert "failing\terrors=2 last_error=http_4xx" in text

    rec.resp = Response(rss(2), "application/rss+xml")  # the feed recovers
    assert poll_once(ctx, feed).outcome == "new_entries"
    assert schedule.describe(feed.id)["errors"] == "0" and schedule.failing() == []
    assert len(rec.sent) == 3
