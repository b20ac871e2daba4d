"""Push (WebSub): signatures, hub discovery, the subscription rules, and a subscription plus signed deliveries
end to end through a hub written here, our callback server, the real Redis and a real Celery worker."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import format_datetime
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from wsgiref.simple_server import WSGIServer

import pytest
import redis

from tests.pipeline_helpers import poll_and_wait, published
from worker import metrics
from worker.cli.websub_callback import start as start_callback
from worker.context import Context
from worker.core.redisconn import free_port
from worker.core.settings import get_settings
from worker.demo.server import LocalServer, Response
from worker.demo.site import DemoSite, build_site
from worker.feeds.feedlist import Feed
from worker.net.fetch import fetch
from worker.poll import websub
from worker.poll.parse import parse_feed
from worker.poll.schedule import Schedule
from worker.poll.step import poll

SECRET = "s3cret"
BODY = b"<feed>hello</feed>"


# --- signatures -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha384", "sha512"])
def test_each_signature_algorithm_is_checked(algorithm: str) -> None:
    header = websub.sign(SECRET, BODY, algorithm)
    assert websub.verify_signature(SECRET, BODY, header) == "ok"
    assert websub.verify_signature(SECRET, BODY, header.upper().replace(algorithm.upper(), algorithm)) == "ok"
    assert websub.verify_signature(SECRET, BODY + b" ", header) == "bad"
    assert websub.verify_signature("other", BODY, header) == "bad"


def test_bad_and_missing_signatures() -> None:
    good = websub.sign(SECRET, BODY, "sha256")
    assert websub.verify_signature(SECRET, BODY, None) == "missing"
    assert websub.verify_signature(SECRET, BODY, "  ") == "missing"
    assert websub.verify_signature(SECRET, BODY, good.split("=", 1)[1]) == "bad"  # no method
    assert websub.verify_signature(SECRET, BODY, "md5=" + good.split("=", 1)[1]) == "bad"  # unknown method
    assert websub.verify_signature(SECRET, BODY, "sha256=") == "bad"
    assert websub.verify_signature(SECRET, BODY, "sha256=" + "0" * 64) == "bad"


def test_each_feed_has_its_own_derived_secret() -> None:
    settings = get_settings().model_copy(update={"websub_secret": None})
    assert not websub.enabled(settings)
    a = websub.feed_secret(get_settings(), "aaaa")
    assert a == websub.feed_secret(get_settings(), "aaaa") and a != websub.feed_secret(get_settings(), "bbbb")
    assert len(a.encode()) < 200  # the spec's limit on hub.secret


# --- hub discovery ------------------------------------------------------------------------------------------


def test_hub_discovery_from_rss() -> None:
    body = b"""<?xml version="1.0"?><rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel>
    <title>t</title><atom:link rel="hub" href="https://hub.example/"/>
    <atom:link rel="self" href="/feed.xml" type="application/rss+xml"/>
    <item><title>a</title><link>https://news.example/a</link></item></channel></rss>"""
    parsed = parse_feed(body, url="https://news.example/rss?x=1")
    assert parsed.hub == "https://hub.example/"
    assert parsed.self_url == "https://news.example/feed.xml"
    assert len(parsed.entries) == 1


def test_hub_discovery_from_atom() -> None:
    body = b"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>
    <link rel="self" href="https://news.example/atom"/><link rel="hub" href="https://hub.example/h"/>
    <link href="https://news.example/"/>
    <entry><id>1</id><title>a</title><link href="https://news.example/a"/></entry></feed>"""
    parsed = parse_feed(body, url="https://news.example/atom")
    assert (parsed.hub, parsed.self_url) == ("https://hub.example/h", "https://news.example/atom")


def test_feed_without_hub() -> None:
    body = b"""<rss version="2.0"><channel><title>t</title><link>https://news.example/</link>
    <item><link>https://news.example/a</link></item></channel></rss>"""
    parsed = parse_feed(body, url="https://news.example/rss")
    assert parsed.hub is None and parsed.self_url is None


def test_link_header_wins_over_the_feed(redis_client: redis.Redis, http_server: LocalServer) -> None:
    body = (b'<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel><title>t</title>'
            b'<atom:link rel="hub" href="https://in-body.example/"/><item><link>https://news.example/a</link>'
            b"</item></channel></rss>")
    http_server.routes["/feed.xml"] = Response(body, "application/rss+xml", headers={
        "Link": '<https://in-header.example/hub>; rel="hub", </canonical.xml>; rel="self"'})
    result = fetch(http_server.url("/feed.xml"), kind="feed")
    assert result.links == {"hub": "https://in-header.example/hub", "self": http_server.url("/canonical.xml")}
    polled = poll(Context(redis_client), Feed(url=http_server.url("/feed.xml")))
    assert (polled.hub, polled.self_url) == ("https://in-header.example/hub", http_server.url("/canonical.xml"))


# --- when to (re)subscribe ------------------------------------------------------------------------------------


def _sub(**changes: Any) -> websub.Subscription:
    base = websub.Subscription(topic="https://t.example/f", hub="https://hub.example/", state="verified",
                               lease_until=1_000_000.0 + 86400 * 10, lease_seconds=86400 * 10,
                               requested_at=1_000_000.0, pending="")
    return dataclasses.replace(base, **changes)


def test_when_to_subscribe() -> None:
    hub, topic, t0 = "https://hub.example/", "https://t.example/f", 1_000_000.0
    assert websub.needs_request(None, hub, topic, t0)
    # a live lease far from its end: nothing to do
    assert not websub.needs_request(_sub(), hub, topic, t0 + 86400)
    # renewal in the last 10 % of the lease
    assert websub.needs_request(_sub(), hub, topic, t0 + 86400 * 9.5)
    # a short lease renews in its last hour, not in its last 10 % only
    short = _sub(lease_seconds=7200.0, lease_until=t0 + 7200)
    assert not websub.needs_request(short, hub, topic, t0 + 3500)
    assert websub.needs_request(short, hub, topic, t0 + 3700)
    # at most one request an hour, whatever the state
    assert not websub.needs_request(_sub(state="pending", pending="subscribe"), hub, topic, t0 + 600)
    assert websub.needs_request(_sub(state="pending", pending="subscribe"), hub, topic, t0 + 3601)
    assert not websub.needs_request(_sub(hub="https://new-hub.example/"), hub, topic, t0 + 60)
    assert websub.needs_request(_sub(hub="https://new-hub.example/"), hub, topic, t0 + 3601)
    assert not websub.needs_request(_sub(state="denied"), hub, topic, t0 + 3601)
    assert websub.needs_request(_sub(state="denied"), hub, topic, t0 + 86401)


# --- a hub -----------------------------------------------------------------------------------------------------


@dataclass
class Hub:
    """A minimal WebSub hub: accepts (un)subscription requests with 202 (or ``refuse_with``), verifies intent
    against the callback from another thread as real hubs do, and delivers signed content on demand."""

    lease_seconds: int = 600
    refuse_with: int | None = None
    requests: list[dict[str, str]] = field(default_factory=list)
    verifications: list[tuple[int, str, str]] = field(default_factory=list)  # (status, body, challenge)
    verified: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hub"

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in urllib.parse.parse_qs(handler.rfile.read(length).decode()).items()}
        self.requests.append(form)
        status = self.refuse_with or 202
        handler.send_response(status)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        if status == 202:
            threading.Thread(target=self.verify, args=(form,), daemon=True).start()

    def verify(self, form: dict[str, str], **overrides: str) -> tuple[int, str]:
        challenge = f"challenge-{len(self.verifications)}-{time.monotonic_ns()}"
        query = {"hub.mode": form["hub.mode"], "hub.topic": form["hub.topic"], "hub.challenge": challenge,
                 "hub.lease_seconds": str(self.lease_seconds)} | overrides
        status, body = http("GET", form["hub.callback"] + "?" + urllib.parse.urlencode(query))
        self.verifications.append((status, body, challenge))
        self.verified.set()
        return status, body

    def deliver(self, callback: str, body: bytes, secret: str | None, algorithm: str = "sha256",
                signature: str | None = None) -> int:
        headers = {"Content-Type": "application/rss+xml; charset=utf-8",
                   "Link": f'<{self.url}>; rel="hub"'}
        if signature is not None:
            headers["X-Hub-Signature"] = signature
        elif secret is not None:
            headers["X-Hub-Signature"] = websub.sign(secret, body, algorithm)
        return http("POST", callback, body, headers)[0]


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def hub() -> Iterator[Hub]:
    state = Hub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            state.handle(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.server = server
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def callback(redis_client: redis.Redis) -> Iterator[str]:
    """Our callback server, on the port of INGEST_WEBSUB_CALLBACK_URL (set by conftest for every worker)."""
    base = get_settings().websub_callback_url
    assert base is not None
    server: WSGIServer = start_callback(redis_client, "127.0.0.1", urllib.parse.urlsplit(base).port)
    yield base
    server.shutdown()
    server.server_close()


def rss(site: DemoSite, slugs: list[str], hub_url: str) -> bytes:
    items = "".join(
        f"<item><title>{escape(a.title)}</title><link>{escape(site.article_url(a.slug))}</link>"
        f"<guid>{escape(site.article_url(a.slug))}</guid><pubDate>{format_datetime(a.published, usegmt=True)}"
        "</pubDate></item>"
        for a in (site.article(s) for s in slugs))
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom">'
            f"<channel><title>{escape(site.site_name)}</title><link>{escape(site.base_url)}/</link>"
            f'<atom:link rel="hub" href="{escape(hub_url)}"/>'
            f'<atom:link rel="self" href="{escape(site.feed_url)}" type="application/rss+xml"/>'
            f"{items}</channel></rss>").encode()


def wait_for(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _deliveries(outcome: str) -> float:
    return float(metrics.WEBSUB_DELIVERIES.labels(outcome=outcome)._value.get())


# --- end to end --------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("celery_worker")
def test_subscription_and_signed_delivery_end_to_end(redis_client: redis.Redis, http_server: LocalServer,
                                                     hub: Hub, callback: str) -> None:
    site = build_site(http_server.url(""), n_articles=4, seed=7)
    http_server.routes.update(site.routes)
    first, second, pushed, forged = (a.slug for a in site.articles)
    http_server.routes[site.feed_path] = Response(rss(site, [first, second], hub.url), "application/rss+xml")
    feed = Feed(url=site.feed_url, name="pushed")
    settings = get_settings()

    def ours() -> list[dict[str, Any]]:  # this site's articles only, whatever another test left running
        return [a for a in published(redis_client) if a["canonical_url"].startswith(site.base_url)]

    # 1. A poll publishes what the feed has, and subscribes because it advertises a hub.
    counts = poll_and_wait(redis_client, [feed])
    assert counts.get("published:articles") == 2, counts
    assert len(hub.requests) == 1
    request = hub.requests[0]
    assert request == {
        "hub.mode": "subscribe", "hub.topic": site.feed_url, "hub.callback": f"{callback}/websub/{feed.id}",
        "hub.secret": websub.feed_secret(settings, feed.id), "hub.lease_seconds": str(settings.websub_lease_seconds),
    }
    # 2. The hub verifies intent against our callback: the challenge is echoed, push is live for the lease.
    assert hub.verified.wait(30)
    status, body, challenge = hub.verifications[0]
    assert (status, body) == (200, challenge)
    assert websub.push_active(redis_client, feed.id)
    assert not websub.push_active(redis_client, feed.id, now=time.time() + hub.lease_seconds + 1)
    # the same verification again finds no pending request; a wrong topic is refused too
    assert hub.verify(request)[0] == 404
    assert hub.verify(request | {"hub.topic": site.url("/other.xml")})[0] == 404

    # 3. Forged deliveries are acknowledged (as the spec asks) and ignored.
    sub_url = request["hub.callback"]
    bad_before, missing_before = _deliveries("bad_signature"), _deliveries("missing_signature")
    forged_body = rss(site, [forged, second, first], hub.url)
    assert hub.deliver(sub_url, forged_body, secret="not-the-secret") == 202
    assert hub.deliver(sub_url, forged_body, secret=None) == 202
    assert hub.deliver(sub_url, forged_body, secret=None, signature="sha256=" + "0" * 64) == 202
    assert _deliveries("bad_signature") == bad_before + 2 and _deliveries("missing_signature") == missing_before + 1

    # 4. A signed delivery with a new entry: the article reaches the stream through the real worker.
    assert hub.deliver(sub_url, rss(site, [pushed, second, first], hub.url), secret=request["hub.secret"],
                       algorithm="sha512") == 202
    pushed_url = site.article_url(pushed)
    wait_for(lambda: any(a["canonical_url"] == pushed_url for a in ours()), "the pushed article")
    articles = ours()
    assert len(articles) == 3 and len({a["id"] for a in articles}) == 3
    assert next(a for a in articles if a["canonical_url"] == pushed_url)["feed"]["name"] == "pushed"
    assert http_server.hits.get(site.article_path(forged), 0) == 0  # the forged entry was never fetched

    # 5. The safety-net poll sees the pushed entry as known: it is fetched once, published once.
    http_server.routes[site.feed_path] = Response(rss(site, [pushed, second, first], hub.url), "application/rss+xml")
    counts = poll_and_wait(redis_client, [feed])
    assert counts.get("polled:no_new_entries") == 1, counts
    assert http_server.hits[site.article_path(pushed)] == 1
    assert len(ours()) == 3
    assert len(hub.requests) == 1  # the lease is fresh: no second subscription request
    # and while push is live, polling is only the safety net: the feed's next poll is at the ceiling
    assert float(Schedule(redis_client).describe(feed.id)["interval"]) == settings.max_interval


def test_verification_without_a_pending_request_is_refused(redis_client: redis.Redis, callback: str) -> None:
    feed = Feed(url="http://127.0.0.1:9/never-subscribed.xml")
    query = urllib.parse.urlencode({"hub.mode": "subscribe", "hub.topic": feed.url, "hub.challenge": "x",
                                    "hub.lease_seconds": "60"})
    assert http("GET", f"{callback}/websub/{feed.id}?{query}")[0] == 404
    assert not websub.push_active(redis_client, feed.id)
    # a delivery for a feed we do not know asks the hub to stop (410)
    body = b"<rss/>"
    signature = websub.sign(websub.feed_secret(get_settings(), feed.id), body)
    assert http("POST", f"{callback}/websub/{feed.id}", body, {"X-Hub-Signature": signature})[0] == 410
    # health and metrics are served beside the callback
    assert http("GET", f"{callback}/healthz")[0] == 200
    status, text = http("GET", f"{callback}/metrics")
    assert status == 200 and "ingest_websub_deliveries_total" in text


@pytest.mark.usefixtures("callback")
def test_refusing_hub_is_not_hammered(redis_client: redis.Redis, hub: Hub) -> None:
    hub.refuse_with = 400
    feed = Feed(url="http://127.0.0.1:9/refused.xml")
    Schedule(redis_client).sync([feed])
    ctx = Context(redis_client)
    assert not websub.maybe_subscribe(ctx, feed, hub.url, None)
    assert not websub.maybe_subscribe(ctx, feed, hub.url, None)  # within the hour: not asked again
    assert len(hub.requests) == 1 and hub.requests[0]["hub.topic"] == feed.url  # no rel=self: the feed URL
    sub = websub.load(redis_client, feed.id)
    assert sub is not None and sub.state == "pending" and not websub.push_active(redis_client, feed.id)
    # an hour later it is tried again, and this time the hub accepts and verifies
    hub.refuse_with = None
    later = time.time() + websub.RETRY_SECONDS + 1
    assert websub.maybe_subscribe(ctx, feed, hub.url, None, now=later)
    assert len(hub.requests) == 2
    assert hub.verified.wait(30) and hub.verifications[0][0] == 200
    assert websub.push_active(redis_client, feed.id)
    # unsubscribing: the hub verifies that too, and the state is gone
    hub.verified.clear()
    assert websub.request(ctx, feed.id, hub.url, feed.url, "unsubscribe")
    assert hub.requests[-1]["hub.mode"] == "unsubscribe" and "hub.secret" not in hub.requests[-1]
    assert hub.verified.wait(30) and hub.verifications[-1][0] == 200
    assert websub.load(redis_client, feed.id) is None and not websub.push_active(redis_client, feed.id)


@pytest.mark.usefixtures("callback")
def test_a_304_poll_renews_what_the_last_full_poll_advertised(redis_client: redis.Redis, hub: Hub) -> None:
    feed = Feed(url="http://127.0.0.1:9/renewed.xml")
    ctx = Context(redis_client)
    topic = "http://127.0.0.1:9/self.xml"
    assert websub.maybe_subscribe(ctx, feed, hub.url, topic)
    assert hub.verified.wait(30) and websub.push_active(redis_client, feed.id)
    later = time.time() + websub.RETRY_SECONDS + 1  # the 600 s lease is inside its last hour
    # a full feed that no longer names a hub: no renewal, the lease lapses and polling takes over
    assert not websub.maybe_subscribe(ctx, feed, None, None, now=later)
    # a 304 says nothing about the hub: renew the subscription we hold, same hub and topic
    hub.verified.clear()
    assert websub.maybe_subscribe(ctx, feed, None, None, now=later, not_modified=True)
    assert [(r["hub.mode"], r["hub.topic"]) for r in hub.requests] == [("subscribe", topic)] * 2
    assert hub.verified.wait(30) and hub.verifications[-1][0] == 200


def test_denied_subscription(redis_client: redis.Redis, hub: Hub, callback: str) -> None:
    feed = Feed(url="http://127.0.0.1:9/denied.xml")
    ctx = Context(redis_client)
    hub_verify = hub.verify  # this hub accepts the request, then denies it instead of verifying
    hub.verify = lambda form, **kw: hub_verify(form, **{"hub.mode": "denied", "hub.reason": "no"})  # type: ignore[method-assign]
    assert websub.maybe_subscribe(ctx, feed, hub.url, None)
    assert hub.verified.wait(30)
    assert hub.verifications[0][0] == 200
    sub = websub.load(redis_client, feed.id)
    assert sub is not None and sub.state == "denied" and not websub.push_active(redis_client, feed.id)


def test_cli_serves_the_callback(redis_client: redis.Redis) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "websub", "serve", "--host", "127.0.0.1",
                             "--port", str(port)], env=os.environ | {"INGEST_LOG_FORMAT": "json"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return http("GET", f"{base}/readyz")[0] == 200
            except OSError:
                return proc.poll() is not None  # exited: the assertion below says so
        wait_for(up, "ingest websub serve")
        assert proc.poll() is None
        feed = Feed(url="http://127.0.0.1:9/cli.xml")
        assert http("GET", f"{base}/websub/{feed.id}?hub.mode=subscribe&hub.topic=x&hub.challenge=c")[0] == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()
    assert b"websub_serving" in out
