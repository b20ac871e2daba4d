"""Scheduling at scale: the dispatcher's tick cost and one full poll cycle with 10 000 feeds.

    .venv/bin/python ops/bench/scheduler.py [--feeds 10000] [--entries 10] [--due 1000] [--ticks 30]

The feeds are served from a separate process, one route per feed: an RSS document of ``--entries`` items with
an ETag, answered 304 when the request's If-None-Match matches (so after the first poll every feed is "not
modified"). The items are marked seen beforehand, so the first cycle parses every feed but fans nothing out:
it measures polling, not extraction. The feed list is a real YAML file (``INGEST_FEEDS``).

Measures:
  * ``sync``: loading + validating the feed list file (``FeedList.get``) and ``Schedule.sync`` of all feeds,
    first time (all added) and again after the file changed with the same feeds;
  * ``tick``: the real ``worker.tasks.dispatch`` task body, called in this process (feed list check, claim of
    the due feeds, one ``poll_feeds`` message per ``INGEST_DISPATCH_CHUNK`` feeds), with nothing due and
    with ``--due`` feeds due (median of ``--ticks``; no worker runs meanwhile, the queued polls are dropped);
  * ``--latency-ms``: each feed response is delayed (the server is threaded, so delays overlap), to see
    a cycle bounded by the network;
  * ``cycle``: with one download-stage worker (threads, ``--concurrency``), every feed made due and the dispatch
    ticks run back to back until all are claimed, until every poll is recorded (``polled:*`` counters): first
    cycle (200s, parsed, nothing new) and second (all 304). All feeds are on one host with its politeness limits
    lifted (``benchlib``), so the cycle measures the worker: one process, whose parsing holds the GIL. In
    production the ticks are ``INGEST_DISPATCH_EVERY`` apart and claim at most ``INGEST_DISPATCH_BATCH`` feeds
    each, which bounds dispatch at batch/every feeds/s; that bound is printed too.

Last line: ``scheduler feeds=N tick_ms=<median with --due due> idle_tick_ms=.. cycle_s=<304 cycle> ...``.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib
from benchlib import Item, ServerProcess

from worker.demo.server import Response, Route

HOST = "127.0.0.2"


def delayed(resp: Response, seconds: float) -> Route:
    """A route answering like ``resp`` (304 on a matching If-None-Match included) after ``seconds``: a
    stand-in for a remote server's round trip."""
    def route(handler: Any) -> None:
        time.sleep(seconds)
        handler._send(resp)
    return route


def feed_routes(n_feeds: int, entries: int,
                latency: float = 0.0) -> Callable[[str, Callable[[str, str], str]], dict[str, Route]]:
    def routes_for(host: str, url: Callable[[str, str], str]) -> dict[str, Route]:
        routes: dict[str, Route] = {}
        dates = benchlib.published_dates(entries)
        for i in range(n_feeds):
            items = [Item(url(host, f"/a/{i}/{j}.html"), f"Feed {i} story {j}", dates[j], f"f{i}-{j}")
                     for j in range(entries)]
            resp = benchlib.rss_response(benchlib.rss(f"Feed {i}", url(host, "/"), items), etag=f'"v1-{i}"')
            routes[f"/f/{i}.xml"] = delayed(resp, latency) if latency > 0 else resp
        return routes
    return routes_for


def mark_seen(server: ServerProcess, n_feeds: int, entries: int) -> None:
    """What a first poll would have remembered: every item's canonical-URL id and guid id."""
    from worker.core.keys import digest
    from worker.core.settings import get_settings
    from worker.core.urls import article_id, canonicalize
    from worker.dedup.buckets import BucketSet

    seen = BucketSet(benchlib.client(), "seen", get_settings().seen_ttl_days * 86400)
    ids: list[str] = []
    for i in range(n_feeds):
        for j in range(entries):
            ids.append(article_id(canonicalize(server.url(HOST, f"/a/{i}/{j}.html"))))
            ids.append(digest(f"guid:f{i}-{j}"))
        if len(ids) >= 20_000:
            seen.add_many(ids)
            ids = []
    if ids:
        seen.add_many(ids)


def polled_total(r: redis.Redis) -> int:
    from worker.core import runs

    return sum(v for k, v in runs.totals(r).items() if k.startswith("polled:"))


def make_all_due(r: redis.Redis, feed_ids: list[str]) -> None:
    from worker.poll.schedule import due_key

    now = time.time()
    for i in range(0, len(feed_ids), 5000):
        r.zadd(due_key(), dict.fromkeys(feed_ids[i : i + 5000], now), xx=True)


def cycle(r: redis.Redis, feed_ids: list[str], dispatch: Callable[[], int], timeout: float) -> tuple[float, float, int]:
    """Make every feed due, tick back to back until none is due, wait for every poll. Returns (seconds to
    dispatch all, seconds until the last poll is recorded, ticks)."""
    make_all_due(r, feed_ids)
    before = polled_total(r)
    started = time.perf_counter()
    ticks = 0
    while True:
        ticks += 1
        if dispatch() == 0:
            break
    dispatched = time.perf_counter() - started
    deadline = time.monotonic() + timeout
    while polled_total(r) - before < len(feed_ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"cycle not finished: {polled_total(r) - before} of {len(feed_ids)} polled")
        time.sleep(0.02)
    return dispatched, time.perf_counter() - started, ticks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feeds", type=int, default=10_000)
    ap.add_argument("--entries", type=int, default=10, help="items per feed (all already seen)")
    ap.add_argument("--due", type=int, default=1000, help="feeds due in the busy tick")
    ap.add_argument("--ticks", type=int, default=30, help="ticks measured per case (median)")
    ap.add_argument("--concurrency", type=int, default=None,
                    help="download threads (default: the download stage's, INGEST_DOWNLOAD_CONCURRENCY)")
    ap.add_argument("--latency-ms", type=float, default=0.0,
                    help="delay every feed response by this much (a remote server's round trip)")
    ap.add_argument("--timeout", type=float, default=1800.0)
    args = ap.parse_args(argv)

    print(benchlib.machine())
    tmp = Path(tempfile.mkdtemp(prefix="ingest-bench-sched-"))
    feeds_path = tmp / "feeds.yaml"
    redis_server = benchlib.start_redis({"INGEST_FEEDS": str(feeds_path)})
    import structlog

    # The dispatch task logs at INFO; keep this process quiet (the worker logs to its own file).
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    started = time.perf_counter()
    server = ServerProcess([HOST], feed_routes(args.feeds, args.entries, args.latency_ms / 1000))
    print(f"serving {args.feeds} feeds of {args.entries} items, {args.latency_ms:g} ms added latency, "
          f"from pid {server.proc.pid} ({time.perf_counter() - started:.1f} s to build)")
    worker = None
    try:
        from worker import tasks
        from worker.core.settings import get_settings
        from worker.feeds.feedlist import Feed, FeedList, save_feeds
        from worker.poll.schedule import Schedule, due_key

        r = benchlib.client()
        r.flushdb()
        feeds = [Feed(url=server.url(HOST, f"/f/{i}.xml"), name=f"feed {i}") for i in range(args.feeds)]
        feed_ids = [f.id for f in feeds]
        save_feeds(feeds_path, feeds)
        mark_seen(server, args.feeds, args.entries)
        schedule = Schedule(r, get_settings())

        # --- sync ---
        t = time.perf_counter()
        loaded, _ = FeedList(feeds_path).get()
        t_load = time.perf_counter() - t
        t = time.perf_counter()
        added, _ = schedule.sync(loaded)
        t_sync = time.perf_counter() - t
        t = time.perf_counter()
        schedule.sync(loaded)
        t_resync = time.perf_counter() - t
        print(f"sync: load+validate {len(loaded)} feeds from YAML {t_load * 1000:.0f} ms; Schedule.sync first "
              f"({added} added) {t_sync * 1000:.0f} ms, again unchanged {t_resync * 1000:.0f} ms "
              f"(a tick pays load + sync whenever the file changes)")

        # --- ticks (no worker: the polls only pile up in the queue, then are dropped) ---
        dispatch = tasks.dispatch
        dispatch()  # first call: builds the context and reads the file (already synced: no change)
        while schedule.claim_due():  # every feed is due after the sync: lease them all (nothing due)
            pass
        r.delete("poll")
        idle = []
        for _ in range(args.ticks):
            t = time.perf_counter()
            n = dispatch()
            idle.append((time.perf_counter() - t) * 1000)
            assert n == 0, n
        busy, claim_only = [], []
        sample = feed_ids[: args.due]
        for _ in range(args.ticks):
            r.zadd(due_key(), dict.fromkeys(sample, time.time() - 1), xx=True)
            t = time.perf_counter()
            n = dispatch()
            busy.append((time.perf_counter() - t) * 1000)
            assert n == len(sample), n
            r.zadd(due_key(), dict.fromkeys(sample, time.time() - 1), xx=True)
            t = time.perf_counter()
            schedule.claim_due()
            claim_only.append((time.perf_counter() - t) * 1000)
            r.delete("poll")
        idle_ms, busy_ms = statistics.median(idle), statistics.median(busy)
        claim_ms = statistics.median(claim_only)
        print(f"tick with {args.feeds} feeds: nothing due median {idle_ms:.2f} ms (p90 "
              f"{benchlib.pct(idle, 90):.2f}); {len(sample)} due median {busy_ms:.1f} ms (p90 "
              f"{benchlib.pct(busy, 90):.1f}) = claim {claim_ms:.1f} ms + enqueueing "
              f"{(busy_ms - claim_ms) / len(sample) * 1000:.0f} us per feed")
        s = get_settings()
        print(f"dispatch cadence bound: {s.dispatch_batch} feeds per tick every {s.dispatch_every:g} s = "
              f"{s.dispatch_batch / s.dispatch_every:.0f} feeds/s; {args.feeds} feeds due at once need "
              f"{args.feeds / s.dispatch_batch * s.dispatch_every:.0f} s of ticks")

        # --- cycles with a worker ---
        worker = benchlib.start_worker("bench-sched", stage="download", concurrency=args.concurrency)
        threads = args.concurrency or get_settings().download_concurrency
        roles = {"worker": worker.proc.pid, "http server": server.proc.pid or 0, "redis": redis_server.proc.pid,
                 "bench": os.getpid()}
        results = []
        for name in ("first (200, parsed, nothing new)", "second (all 304)"):
            cpu0 = benchlib.cpu_seconds(roles)
            d, c, ticks = cycle(r, feed_ids, dispatch, args.timeout)
            cpu1 = benchlib.cpu_seconds(roles)
            cpu = " ".join(f"{k.replace(' ', '_')}={(cpu1[k] - cpu0[k]) * 1000 / args.feeds:.2f}" for k in cpu1)
            totals = {k: v for k, v in benchlib.client().hgetall("ingest:stats").items()}
            results.append(c)
            print(f"cycle {name}: dispatched in {d:.1f} s ({ticks} ticks back to back), all polled in {c:.1f} s "
                  f"= {args.feeds / c:.0f} feeds/s, one download process of {threads} threads; CPU ms per feed: {cpu}")
            print(f"  counters {benchlib.jdump({k.decode(): int(v) for k, v in totals.items()})}")
    finally:
        if worker is not None:
            benchlib.stop_worker(worker)
        server.stop()
        redis_server.stop()
    print(benchlib.machine())
    print(f"scheduler feeds={args.feeds} latency_ms={args.latency_ms:g} tick_ms={busy_ms:.1f} due={len(sample)} "
          f"idle_tick_ms={idle_ms:.2f} "
          f"cycle_s={results[1]:.1f} first_cycle_s={results[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
