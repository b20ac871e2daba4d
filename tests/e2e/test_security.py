"""Security properties, on real parts: the SSRF guard refusing through the pipeline and through a worker,
credentials in the Redis URL never reaching any output, and untrusted feed content never shaping a Redis key.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.e2e.test_faults import Stack, private_redis
from tests.pipeline_helpers import fetch_and_extract
from worker.context import Context
from worker.core.redisconn import free_port, redis_server_binary
from worker.core.settings import Settings
from worker.core.urls import article_id, canonicalize
from worker.demo.server import LocalServer, Response
from worker.feeds.feedlist import Feed, save_feeds
from worker.net.fetch import Clients
from worker.poll.schedule import Schedule
from worker.poll.step import commit_poll, feed_info, poll
from worker.publish.deadletter import DeadLetters
from worker.publish.step import publish

ROOT = Path(__file__).resolve().parents[2]

WORDS = ["council", "harbour", "budget", "vote", "river", "bridge", "school", "teachers", "market", "farmers",
         "weather", "storm", "museum", "library", "funding", "residents", "mayor", "police", "report", "station",
         "transport", "railway", "hospital", "nurses"]


def article_html(title: str, seed: int, paragraphs: int = 5) -> bytes:
    """A plain article page with enough text for trafilatura."""
    paras = []
    for p in range(paragraphs):
        words = [WORDS[(seed * 7 + p * 13 + i * 5) % len(WORDS)] for i in range(45)]
        paras.append(f"<p>Paragraph {p} of story {seed}: {' '.join(words)}.</p>")
    safe = title.replace("&", "&amp;").replace("<", "&lt;")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{safe}</title></head>"
            f"<body><main><article><h1>{safe}</h1>{''.join(paras)}</article></main></body></html>").encode()


def rss(items: list[dict[str, str]]) -> bytes:
    def esc(s: str) -> str:
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    body = "".join(f"<item><title>{esc(i['title'])}</title><link>{esc(i['link'])}</link>"
                   f"<guid isPermaLink='false'>{esc(i['guid'])}</guid>"
                   f"<description>{esc(i['title'])}</description></item>" for i in items)
    return (f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>t</title>"
            f"<link>http://example.org/</link><description>d</description>{body}</channel></rss>").encode()


def serve_feed(server: LocalServer, path: str, n: int = 2) -> tuple[Feed, list[str]]:
    pages = [f"/sec/story-{i}.html" for i in range(n)]
    for i, page in enumerate(pages):
        server.routes[page] = Response(article_html(f"Harbour council story number {i} today", i))
    server.routes[path] = Response(rss([{"title": f"Harbour council story number {i} today",
                                         "link": server.url(page), "guid": page} for i, page in enumerate(pages)]),
                                   "application/rss+xml")
    return Feed(url=server.url(path), name="sec"), pages


# --- SSRF ------------------------------------------------------------------------------------------------------


__all__ = ["private_redis"]  # the fixture, imported for this module's tests


@pytest.fixture
def redis_client(private_redis: tuple[redis.Redis, str]) -> redis.Redis:
    """This module's tests run on a throwaway Redis of their own, not the shared test database."""
    return private_redis[0]


def strict_context(r: redis.Redis) -> Context:
    return Context(r, Settings(allow_private_networks=False))


def test_ssrf_guard_refuses_local_feed_and_page_through_the_pipeline(redis_client: redis.Redis,
                                                                    http_server: LocalServer) -> None:
    """With private networks refused (the production default), a feed and a page on 127.0.0.1 are refused
    before any connection is made: the poll fails with reason ``private_address``, the page is dead-lettered
    with the same reason, and the server never sees a request."""
    feed, pages = serve_feed(http_server, "/sec/feed.xml")
    ctx = strict_context(redis_client)
    Schedule(redis_client).sync([feed])
    result = poll(ctx, feed)
    assert result.outcome == "error" and result.error == "private_address"
    assert result.jobs == []
    url = http_server.url(pages[0])
    task = {"article_id": article_id(canonicalize(url)), "url": url, "canonical_url": canonicalize(url),
            "title": "x", "summary": "", "published": None, "feed": feed_info(feed).encode(), "run": None}
    assert fetch_and_extract(ctx, task) is None
    assert http_server.hits == {}, "the guard let a request through"
    letters = {(dl.stage, dl.url): dl.reason for dl in DeadLetters(redis_client).list()}
    assert letters == {("poll", feed.url): "private_address", ("fetch", url): "private_address"}
    assert Schedule(redis_client).state(feed.id).errors == 1
    assert not redis_client.exists("articles")


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",  # cloud metadata
    "http://10.0.0.1/feed.xml",
    "http://192.168.1.1/feed.xml",
    "http://localhost:{port}/sec/feed.xml",
    "http://[::1]:{port}/sec/feed.xml",
    "http://[::ffff:127.0.0.1]:{port}/sec/feed.xml",  # IPv4-mapped IPv6
    "http://0.0.0.0:{port}/sec/feed.xml",
    "http://2130706433:{port}/sec/feed.xml",  # 127.0.0.1 as one decimal number
])
def test_ssrf_guard_refuses_private_address_forms(redis_client: redis.Redis, http_server: LocalServer,
                                                  url: str) -> None:
    """Every spelling of a private or loopback address is a valid feed URL, and the guard refuses each one as
    ``private_address`` (not as some other failure: the loopback ones would be served by ``http_server``)."""
    serve_feed(http_server, "/sec/feed.xml")
    url = url.format(port=http_server.port)
    ctx = strict_context(redis_client)
    feed = Feed(url=url)
    Schedule(redis_client).sync([feed])
    result = poll(ctx, feed)
    assert (result.outcome, result.error) == ("error", "private_address")
    assert http_server.hits == {}
    assert [dl.reason for dl in DeadLetters(redis_client).list()] == ["private_address"]


def test_ssrf_guard_refuses_a_redirect_into_the_private_network(redis_client: redis.Redis,
                                                              http_server: LocalServer) -> None:
    """An allowed server (here 127.0.0.1, allowed explicitly as an internal mirror) redirecting to the cloud
    metadata address: the hop is checked and refused, through the pipeline's own client."""
    http_server.routes["/sec/hop.xml"] = Response(b"", "text/plain", 302,
                                                  {"Location": "http://169.254.169.254/latest/meta-data/"})
    ctx = strict_context(redis_client)
    ctx.__dict__["clients"] = Clients(ctx.settings, allowed_networks=["127.0.0.1/32"])
    feed = Feed(url=http_server.url("/sec/hop.xml"))
    Schedule(redis_client).sync([feed])
    result = poll(ctx, feed)
    assert http_server.hits.get("/sec/hop.xml") == 1  # the allowed hop was fetched...
    assert result.outcome == "error" and result.error == "private_address"  # ...the private one refused


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_worker_with_default_settings_refuses_local_feed(tmp_path: Path, http_server: LocalServer) -> None:
    """A real worker started with INGEST_ALLOW_PRIVATE_NETWORKS=false (the default) refuses the local feed."""
    feed, _ = serve_feed(http_server, "/sec/feed.xml")
    s = Stack(tmp_path, env={"INGEST_ALLOW_PRIVATE_NETWORKS": "false"})
    try:
        s.start_worker("strict")
        counts = s.wait(s.poll([feed]))
        assert counts.get("polled:error") == 1 and counts.get("dead_letters:private_address") == 1, counts
        assert [dl.reason for dl in DeadLetters(s.r).list()] == ["private_address"]
        assert http_server.hits == {} and s.published() == []
    finally:
        s.close()


# --- credentials in REDIS_URL --------------------------------------------------------------------------------------

PASSWORD = "Tr0ub4dor-s3cret-x9"


@pytest.fixture
def secured_redis(tmp_path: Path) -> Iterator[str]:
    """A throwaway redis-server that requires a password; yields its URL with the password in it."""
    port = free_port()
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--requirepass", PASSWORD, "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
            time.sleep(0.05)
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port).ping()
    client.close()
    yield url
    proc.terminate()
    proc.wait(10)


def ingest(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=os.environ | env)


def no_secret(proc: subprocess.CompletedProcess[str] | tuple[str, str], secret: str = PASSWORD) -> None:
    out, err = (proc.stdout, proc.stderr) if isinstance(proc, subprocess.CompletedProcess) else proc
    for name, text in (("stdout", out), ("stderr", err)):
        assert secret not in text, f"{secret!r} leaked on {name}: ...{text[max(0, text.find(secret) - 300):][:600]}"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_redis_password_never_printed(secured_redis: str, http_server: LocalServer, tmp_path: Path) -> None:
    """``stats`` and ``run --once`` against a password-protected Redis, with JSON logs: they work, and the
    password appears nowhere in their output, error paths included (a wrong password, an unreachable server
    a worker keeps retrying and logging, a feed URL carrying its own credentials)."""
    env = {"REDIS_URL": secured_redis, "INGEST_LOG_FORMAT": "json", "INGEST_METRICS_PORT": "0",
           "INGEST_ALLOW_PRIVATE_NETWORKS": "true",
           "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(dir=tmp_path)}
    stats = ingest("stats", "--json", env=env, timeout=60)
    assert stats.returncode == 0, stats.stderr[-2000:]
    assert set(json.loads(stats.stdout)["queues"]) == {"poll", "fetch", "extract", "publish"}
    no_secret(stats)

    feed, _ = serve_feed(http_server, "/sec/feed.xml")
    feed_password = "feed-pw-8c1e"
    broken = Feed(url=http_server.url("/missing.xml").replace("://", f"://reader:{feed_password}@"))
    feeds = tmp_path / "feeds.yaml"
    save_feeds(feeds, [feed, broken])
    once = ingest("run", "--once", "--feeds", str(feeds), "--timeout", "150", env=env, timeout=200)
    assert once.returncode == 0, once.stderr[-3000:]
    assert '"finished": true' in once.stdout and '"published:articles": 2' in once.stdout, once.stdout[-2000:]
    no_secret(once)
    assert "feed_failed" in once.stderr  # the error path that logs the feed URL ran...
    no_secret(once, feed_password)  # ...and redacted its password

    # A wrong password: the command fails, without echoing either password.
    wrong = secured_redis.replace(PASSWORD, "wrong-" + PASSWORD[::-1])
    failed = ingest("stats", env=env | {"REDIS_URL": wrong}, timeout=60)
    assert failed.returncode != 0
    no_secret(failed)
    no_secret(failed, PASSWORD[::-1])

    # An unreachable server: `stats` fails, and a worker keeps retrying, logging the (masked) broker URL.
    gone = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    failed = ingest("stats", env=env | {"REDIS_URL": gone}, timeout=60)
    assert failed.returncode != 0
    no_secret(failed)
    worker = subprocess.Popen([sys.executable, "-m", "worker.cli", "worker", "-c", "1"], cwd=ROOT,
                              env=os.environ | env | {"REDIS_URL": gone}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        out, err = worker.communicate(timeout=12)
    except subprocess.TimeoutExpired:
        worker.terminate()
        out, err = worker.communicate(timeout=30)
    assert "Cannot connect to redis://" in out + err, (out + err)[-2000:]
    no_secret((out, err))


# --- untrusted content and Redis keys ----------------------------------------------------------------------------

HOSTILE = [
    {"title": "Breaking: *KEYS* {ingest}:seen\nFLUSHALL\r\nevil-title-1 council harbour", "path": "/evil/a*b:{c}.html",
     "guid": "evil-guid:*:{x}\nDEL ingest:*"},
    {"title": "evil-title-2 {slot}:* harbour council meets\n\nagain", "path": "/evil/line%0Abreak:{x}*.html",
     "guid": "urn:evil:{}:*"},
    {"title": "evil-title-3 ingest:feeds:due * {a}{b}", "path": "/evil/q?k=*&v={x}:y",
     "guid": "ingest:feeds:due"},
]
SAFE_KEY = re.compile(r"[A-Za-z0-9:._%\-]+")


def test_untrusted_feed_content_never_reaches_a_key_raw(redis_client: redis.Redis,
                                                        http_server: LocalServer) -> None:
    """A feed (itself at a hostile URL) whose entries' links, titles and guids carry ``*``, newlines, ``:``
    and ``{}`` goes through poll, fetch, extract, clean and publish on a Redis of its own. Afterwards every
    key is made of safe characters only and none contains any of that content; the content itself arrives
    intact inside the published messages, where it is data."""
    r = redis_client
    items = []
    for i, item in enumerate(HOSTILE):
        link = http_server.url(item["path"])
        page = article_html(item["title"], 100 + i)
        for path in {item["path"], httpx.URL(link).raw_path.decode()}:
            http_server.routes[path] = Response(page)
        items.append({"title": item["title"], "link": link, "guid": item["guid"]})
    feed_path = "/evil/feed*{x}:y.xml"
    http_server.routes[feed_path] = Response(rss(items), "application/rss+xml")
    http_server.routes[httpx.URL(http_server.url(feed_path)).raw_path.decode()] = Response(
        rss(items), "application/rss+xml")
    feed = Feed(url=http_server.url(feed_path), name="evil {name}:*\n", tags=("t*{x}:",))

    ctx = Context(r, Settings(allow_private_networks=True, clean_hold_seconds=0))
    Schedule(r).sync([feed])
    result = poll(ctx, feed)
    assert result.outcome == "new_entries" and len(result.jobs) == len(HOSTILE), result
    commit_poll(ctx, result)
    published: list[Any] = []
    for task in result.jobs:
        prepared = fetch_and_extract(ctx, task)
        assert prepared is not None, [dl.as_dict() for dl in DeadLetters(r, ctx.settings).list()]
        article, streams = publish(ctx, prepared)
        assert streams == ["articles"]
        published.append(article)

    keys = sorted(k.decode("utf-8", "replace") for k in r.scan_iter(count=1000))
    assert keys, "nothing was written"
    bad = [k for k in keys if not SAFE_KEY.fullmatch(k)]
    assert not bad, f"keys with unescaped characters: {bad}"
    for k in keys:
        low = k.lower()
        assert "evil" not in low and "flushall" not in low and "slot" not in low, k
    # The hostile text survived as data (the feed parser only collapses its whitespace).
    messages = [json.loads(f[b"data"]) for _, f in r.xrange("articles")]
    assert sorted(m["summary"] for m in messages) == sorted(" ".join(i["title"].split()) for i in HOSTILE)
    assert {m["canonical_url"] for m in messages} == {canonicalize(i["link"]) for i in items}
    assert {m["feed"]["name"] for m in messages} == {"evil {name}:*\n"}
