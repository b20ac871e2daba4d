"""Per-host politeness: the Redis limiter on its own (many threads, a dead holder's lease, pauses, rate spacing
counted over a window), then the fleet: two worker processes fetching slow pages of one host, and a host-wide
Retry-After deferring another feed of the host. Real Redis, real HTTP server, real Celery workers."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.e2e.test_scaling import (  # noqa: F401 - private is a fixture
    private,
    send_polls,
    spawn,
    stop,
    wait_for,
    wait_ready,
)
from tests.pipeline_helpers import fetch_and_extract, poll_and_wait, published, start_run
from worker.context import Context
from worker.core import runs
from worker.core.errors import RetryLater
from worker.core.messages import PageJob
from worker.core.settings import Settings
from worker.core.urls import article_id, canonicalize
from worker.demo.server import LocalServer, Response
from worker.demo.site import build_site
from worker.feeds.feedlist import Feed
from worker.net.politeness import MAX_RESERVE, NO_TURN, HostBusy, Politeness, _keys, host_of
from worker.poll.schedule import Schedule, due_key
from worker.poll.step import feed_info
from worker.tasks import FETCH_RETRIES, fetch_article

HOST = "news.example"

EMPTY_FEED = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><link>http://x/</link>'
              b"<description>d</description></channel></rss>")


def limiter(r: redis.Redis, lease: float | None = None, **overrides: float) -> Politeness:
    values: dict[str, float] = {"host_concurrency": 2, "host_rate": 0, "host_wait_max": 30} | overrides
    return Politeness(r, Settings(**values), lease=lease)  # type: ignore[arg-type]


def test_host_of_is_the_lower_case_host_with_a_non_default_port() -> None:
    assert host_of("https://News.Example/a?b=1") == "news.example"
    assert host_of("https://news.example:443/a") == "news.example"
    assert host_of("http://news.example:80/a") == "news.example"
    assert host_of("http://news.example:8080/a") == "news.example:8080"
    assert host_of("not a url") == ""


def test_concurrency_limit_holds_with_many_threads(redis_client: redis.Redis) -> None:
    polite = limiter(redis_client, host_concurrency=3)
    lock = threading.Lock()
    inflight = peak = done = 0

    def work() -> None:
        nonlocal inflight, peak, done
        for _ in range(5):
            with polite.slot(f"http://{HOST}/page", kind="page"):
                with lock:
                    inflight += 1
                    peak = max(peak, inflight)
                time.sleep(0.02)
                with lock:
                    inflight -= 1
                    done += 1

    threads = [threading.Thread(target=work) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert done == 60
    assert 1 <= peak <= 3, peak
    assert redis_client.zcard(f"ingest:host:{HOST}:slots") == 0  # every slot given back


def test_a_dead_holders_slot_frees_itself_after_its_lease(redis_client: redis.Redis) -> None:
    polite = limiter(redis_client, lease=0.5, host_concurrency=1)
    token, _, _ = polite.try_acquire(HOST)  # taken and never released: its worker "died"
    assert token is not None
    refused, wait, _ = polite.try_acquire(HOST)
    assert refused is None and 0 < wait <= 0.5
    granted = None
    for _ in range(100):
        granted, wait, _ = polite.try_acquire(HOST)
        if granted:
            break
        time.sleep(0.05)
    assert granted is not None, "the expired lease never freed the slot"


def test_slot_gives_up_after_host_wait_max_with_host_busy(redis_client: redis.Redis) -> None:
    polite = limiter(redis_client, host_concurrency=1, host_wait_max=0.3)
    token, _, _ = polite.try_acquire(HOST)
    assert token is not None
    with pytest.raises(HostBusy) as info, polite.slot(f"https://{HOST}/x", kind="feed"):
        pass
    assert info.value.host == HOST and info.value.wait > 0
    polite.release(HOST, token)
    with polite.slot(f"https://{HOST}/x", kind="feed"):
        pass


def test_pause_blocks_the_host_only_and_never_shortens(redis_client: redis.Redis) -> None:
    polite = limiter(redis_client)
    assert polite.pause(HOST, 100) == pytest.approx(100)
    assert polite.pause(HOST, 1) > 90  # a shorter Retry-After does not cut a longer pause
    token, wait, _ = polite.try_acquire(HOST)
    assert token is None and 90 < wait <= 100
    other, _, _ = polite.try_acquire("other.example")
    assert other is not None


def race_for_slots(make: Callable[[], Politeness], callers: int = 8) -> list[tuple[str | None, float, float]]:
    """``callers`` limiters (as many workers) ask for the host at the same instant; their answers."""
    barrier = threading.Barrier(callers)
    answers: list[tuple[str | None, float, float]] = []
    lock = threading.Lock()

    def ask(polite: Politeness) -> None:
        barrier.wait()
        answer = polite.try_acquire(HOST)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=ask, args=(make(),)) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_rate_spaces_requests_across_all_callers(redis_client: redis.Redis) -> None:
    """One request per 100 s: of eight workers asking at once, with slots to spare, exactly one is let through,
    and the others are each given their own turn, 100 s apart (on Redis's clock), as far as MAX_RESERVE
    reaches; those beyond it are told to ask again then, with no turn."""
    answers = race_for_slots(lambda: limiter(redis_client, host_rate=0.01, host_concurrency=100))
    granted = [token for token, _, _ in answers if token is not None]
    assert len(granted) == 1, answers
    turns = sorted(turn for token, _, turn in answers if token is None and turn)
    waits = sorted(wait for token, wait, turn in answers if token is None and turn)
    assert len(turns) == 3 and 90 < waits[0] <= 100, answers  # turns at 100, 200 and 300 s
    assert all(99.9 < b - a < 100.1 for a, b in itertools.pairwise(turns)), turns
    assert all(wait == MAX_RESERVE for token, wait, turn in answers if token is None and not turn), answers
    token, _, _ = limiter(redis_client, host_rate=0.01, host_concurrency=100).try_acquire("other.example")
    assert token is not None  # the spacing is per host


def test_crawl_delay_slows_the_host_below_the_configured_rate(redis_client: redis.Redis) -> None:
    """A 50 s Crawl-delay outranks a rate of 100 a second: after one grant, the callers' turns are 50 s apart."""
    limiter(redis_client).set_crawl_delay(HOST, 50, ttl=60)
    answers = race_for_slots(lambda: limiter(redis_client, host_rate=100, host_concurrency=100))
    assert len([token for token, _, _ in answers if token is not None]) == 1, answers
    turns = sorted(turn for token, _, turn in answers if token is None and turn)
    assert len(turns) == 6 and 40 < min(w for t, w, turn in answers if t is None) <= 50, answers
    assert all(49.9 < b - a < 50.1 for a, b in itertools.pairwise(turns)), turns


# --- the fleet -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_per_host_limit_holds_across_two_worker_processes(private: tuple[str, redis.Redis],  # noqa: F811
                                                          tmp_path: Path, http_server: LocalServer) -> None:
    url, r = private
    site = build_site(http_server.url(""), n_articles=12, seed=11)
    http_server.routes.update(site.routes)
    lock = threading.Lock()
    state = {"inflight": 0, "peak": 0}
    agents: set[str] = set()

    def slow(page: Response) -> object:
        def route(handler: BaseHTTPRequestHandler) -> None:
            with lock:
                agents.add(handler.headers.get("User-Agent", ""))
                state["inflight"] += 1
                state["peak"] = max(state["peak"], state["inflight"])
            try:
                time.sleep(0.3)
                handler.send_response(200)
                handler.send_header("Content-Type", page.content_type)
                handler.send_header("Content-Length", str(len(page.body)))
                handler.end_headers()
                handler.wfile.write(page.body)
            finally:
                with lock:
                    state["inflight"] -= 1
        return route

    for art in site.articles:
        path = site.article_path(art.slug)
        page = site.routes[path]
        http_server.routes[path] = slow(page)  # type: ignore[assignment]
    feed_agents: list[str] = []

    def feed_route(handler: BaseHTTPRequestHandler) -> None:
        feed_agents.append(handler.headers.get("User-Agent", ""))
        handler._send(site.routes[site.feed_path])  # type: ignore[attr-defined]

    http_server.routes[site.feed_path] = feed_route
    env = {"INGEST_HOST_CONCURRENCY": "2", "INGEST_HOST_RATE": "0", "INGEST_CLEAN_HOLD_SECONDS": "0"}
    workers = [spawn(["worker", "-Q", "poll,fetch,extract,publish", "-c", "2", "-n", f"polite{i}@%h", "-l", "INFO",
                      "--without-gossip", "--without-mingle"], url, tmp_path / f"w{i}.log", **env)
               for i in range(2)]
    try:
        wait_ready(url, ["polite0", "polite1"], workers)  # both fleets' members compete from the first page
        run_id = send_polls(url, r, [Feed(url=site.feed_url)])
        wait_for(lambda: runs.pending(r, run_id) == 0 and r.exists(runs.run_key(run_id)), 180, "the run")
        articles = published(r)
        assert len(articles) == 12 and len({a["id"] for a in articles}) == 12, runs.totals(r, run_id)
        assert 1 <= state["peak"] <= 2, state
        assert all(http_server.hits[site.article_path(a.slug)] == 1 for a in site.articles)
        assert not [k for k in runs.totals(r, run_id) if k.startswith("dead_letters")]
        done = [(tmp_path / f"w{i}.log").read_text().count("fetch_article[") for i in range(2)]
        assert all(n > 0 for n in done), f"fetch tasks per worker: {done}"
        assert agents == {Settings().user_agent} and feed_agents == [Settings().user_agent]
    finally:
        for proc in workers:
            stop(proc)


def retry_after_host(server: LocalServer, scope: str | None) -> tuple[Feed, Feed]:
    server.routes["/limited.xml"] = Response(b"slow down", "text/plain", 429, {"Retry-After": "120"})
    server.routes["/other.xml"] = Response(EMPTY_FEED, "application/rss+xml")
    return (Feed(url=server.url("/limited.xml"), name="limited", retry_after_scope=scope),  # type: ignore[arg-type]
            Feed(url=server.url("/other.xml"), name="other"))


@pytest.mark.usefixtures("celery_worker")
def test_retry_after_with_host_scope_defers_the_hosts_other_feeds(redis_client: redis.Redis,
                                                                   http_server: LocalServer) -> None:
    limited, other = retry_after_host(http_server, "host")
    first = poll_and_wait(redis_client, [limited])
    assert first.get("polled:error") == 1, first
    before = time.time()
    run_id = start_run(redis_client, [other])
    wait_for(lambda: runs.totals(redis_client, run_id).get("polled:deferred", 0) >= 1, 60, "the deferral")
    second = runs.totals(redis_client, run_id)
    assert "polled:error" not in second, second
    assert runs.pending(redis_client, run_id) == 1  # the run waits for the feed's turn: it is not skipped
    runs.close(redis_client, run_id)  # nobody waits for this run any more: its poll is not sent again for it
    assert http_server.hits.get("/other.xml") is None  # not even asked: the whole host waits
    state = Schedule(redis_client).describe(other.id)
    assert state.get("errors", "0") == "0" and "etag" not in state  # no error, validators untouched
    due = redis_client.zscore(due_key(), other.id)
    assert due is not None and due > before + 60  # comes back when the pause is over


@pytest.mark.usefixtures("celery_worker")
def test_retry_after_with_feed_scope_holds_back_that_feed_only(redis_client: redis.Redis,
                                                               http_server: LocalServer) -> None:
    limited, other = retry_after_host(http_server, None)  # the global default: feed
    assert poll_and_wait(redis_client, [limited]).get("polled:error") == 1
    second = poll_and_wait(redis_client, [other])
    assert second.get("polled:no_new_entries") == 1, second
    assert http_server.hits.get("/other.xml") == 1


def page_task(server: LocalServer, path: str, scope: str | None, run_id: str | None = None) -> dict[str, Any]:
    url = server.url(path)
    feed = Feed(url=server.url("/feed.xml"), retry_after_scope=scope)  # type: ignore[arg-type]
    return {"article_id": article_id(canonicalize(url)), "url": url, "canonical_url": canonicalize(url),
            "title": "", "summary": "", "published": None, "feed": feed_info(feed).encode(), "other_titles": [],
            "run": run_id}


@pytest.mark.parametrize("scope", ["host", "feed"])
def test_page_429_with_retry_after_pauses_the_host_only_with_host_scope(
        scope: str, redis_client: redis.Redis, http_server: LocalServer) -> None:
    http_server.routes["/busy.html"] = Response(b"later", "text/plain", 429, {"Retry-After": "60"})
    ctx = Context(redis_client, Settings(host_rate=0, robots_obey=False))
    with pytest.raises(RetryLater) as info:
        fetch_and_extract(ctx, page_task(http_server, "/busy.html", scope), final_attempt=False)
    assert info.value.counted and info.value.countdown == 60
    token, wait, _ = ctx.polite.try_acquire(host_of(http_server.url("/")))
    assert (token is None and 50 < wait <= 60) if scope == "host" else token is not None


@pytest.mark.usefixtures("celery_worker")
def test_a_busy_host_does_not_use_up_a_pages_retries(redis_client: redis.Redis, http_server: LocalServer) -> None:
    site = build_site(http_server.url(""), n_articles=1, seed=12)
    http_server.routes.update(site.routes)
    run_id = f"busy{time.monotonic_ns()}"
    task = page_task(http_server, site.article_path(site.articles[0].slug), None, run_id)
    runs.start(redis_client, run_id, [])
    runs.open_articles(redis_client, run_id, [PageJob.model_validate(task)])
    # Longer than the worker's host_wait_max: the page must be put off, not wait.
    Politeness(redis_client).pause(host_of(task["url"]), 4)
    # Sent as its last attempt: a retry that counted would exceed max_retries and the page would be lost.
    fetch_article.apply_async((task,), queue="fetch", retries=FETCH_RETRIES)
    wait_for(lambda: runs.pending(redis_client, run_id) == 0, 60, "the page")
    assert [a["id"] for a in published(redis_client)] == [task["article_id"]], runs.totals(redis_client, run_id)
    assert http_server.hits[site.article_path(site.articles[0].slug)] == 1


def test_a_polls_pages_get_the_hosts_turns_in_one_trip(redis_client: redis.Redis) -> None:
    """Two slots, no rate: two pages go now, the rest a latency apart in pairs; another host's pages are a
    queue of their own; a second poll of the host queues behind the first's turns."""
    polite = limiter(redis_client)
    urls = [f"http://{HOST}/{i}" for i in range(5)] + ["http://other.example/a", "not a url"]
    turns = polite.turns(urls)
    waits = [round(t.wait, 2) for t in turns]
    assert waits[:5] == [0.0, 0.0, 0.3, 0.3, 0.6]  # DEFAULT_LATENCY until the host's answers are timed
    assert waits[5] == 0.0 and turns[5].at > 0
    assert turns[6] == NO_TURN
    assert all(t.at == pytest.approx(turns[0].at + t.wait, abs=0.01) for t in turns[:6])
    later = polite.turns([f"http://{HOST}/again"])
    assert later[0].wait == pytest.approx(0.6, abs=0.05)  # behind the first poll's last turn


def test_turns_follow_the_rate_and_measured_latency_and_stop_at_max_reserve(redis_client: redis.Redis) -> None:
    polite = limiter(redis_client, host_rate=0.5)
    waits = [t.wait for t in polite.turns([f"http://{HOST}/{i}" for i in range(4)])]
    assert waits == pytest.approx([0.0, 2.0, 4.0, 6.0], abs=0.05)
    slow = limiter(redis_client, host_concurrency=1)
    slow.r.set(_keys("slow.example")[5], "100")  # the host's measured latency
    far = slow.turns([f"http://slow.example/{i}" for i in range(5)])
    assert [t.wait for t in far[:4]] == pytest.approx([0, 100, 200, 300], abs=0.05)
    assert far[4] == NO_TURN  # beyond MAX_RESERVE: it asks when it comes


def test_a_paused_host_gives_no_turns(redis_client: redis.Redis) -> None:
    polite = limiter(redis_client)
    polite.pause(HOST, 30)
    assert polite.turns([f"http://{HOST}/a", f"http://{HOST}/b"]) == [NO_TURN, NO_TURN]


def test_turns_count_the_requests_in_flight(redis_client: redis.Redis) -> None:
    """A slot taken a moment ago frees one latency after it was taken; the idle one is free now."""
    polite = limiter(redis_client)
    token, _, _ = polite.try_acquire(HOST)
    assert token is not None
    waits = [t.wait for t in polite.turns([f"http://{HOST}/{i}" for i in range(3)])]
    assert waits == pytest.approx([0.0, 0.3, 0.3], abs=0.05)
