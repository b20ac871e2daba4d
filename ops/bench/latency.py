"""End-to-end freshness: from a new entry appearing in a feed to its article on the stream.

    .venv/bin/python ops/bench/latency.py [--entries 50] [--interval 1] [--concurrency 2]

One worker with embedded beat (``celery -A worker.app worker -B``, ``INGEST_DISPATCH_EVERY`` = ``--interval``)
polls a generated demo site (``worker.demo.site``) whose feed has ``interval`` = ``--interval`` seconds. The
site is pre-warmed first (its initial articles are ingested and published), so the cold-start hold of a
barely known site (``INGEST_CLEAN_HOLD_SECONDS``, which only applies while a site has shown fewer than
``INGEST_CLEAN_MIN_PAGES`` pages) is not part of the figure. Then, one at a time, a new article is added to
the live feed (``add_article``: new page, new ETag) at a random phase, and the benchmark blocks on the
stream (XREAD) until that article is published. Latency = Redis time of the stream entry (its id) minus the
moment the entry appeared in the feed. Expected: up to one dispatch period plus one feed interval of
waiting (a poll every ~interval, on the tick grid), plus fetch + extract + publish.

The HTTP server runs in this process (``add_article`` mutates its routes), which does nothing else but
block on Redis meanwhile. Last line: ``latency n=.. median_ms=.. p99_ms=..``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib

from worker.demo.server import LocalServer, Response, Route

HOST = "127.0.0.2"
STREAM = "articles"


def wait_for(r: redis.Redis, slug: str, last_id: bytes, timeout: float) -> tuple[bytes, int]:
    """Block on the stream until the article of ``slug`` arrives; returns (its entry id, its ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = r.xread({STREAM: last_id}, block=1000, count=100)
        for _, entries in got or []:
            for entry_id, fields in entries:
                last_id = entry_id
                article = json.loads(fields[b"data"])
                if slug in article["url"]:
                    return last_id, int(entry_id.split(b"-")[0])
    raise TimeoutError(f"article {slug} not published within {timeout} s")


def timed_route(resp: Route, fetched: list[float]) -> Route:
    """``resp`` served as before, noting when it is first requested (wall clock, ms)."""
    def route(handler: Any) -> None:
        fetched.append(time.time() * 1000)
        if isinstance(resp, Response):
            handler._send(resp)
        else:
            resp(handler)
    return route


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=50, help="new entries measured")
    ap.add_argument("--interval", type=float, default=1.0, help="feed interval and dispatch period, seconds")
    ap.add_argument("--concurrency", type=int, default=2, help="extract processes")
    ap.add_argument("--prewarm", type=int, default=12, help="articles ingested before measuring")
    ap.add_argument("--gap", type=float, default=1.0, help="mean random pause between entries, seconds")
    ap.add_argument("--timeout", type=float, default=60.0, help="longest wait for one article")
    args = ap.parse_args(argv)

    print(benchlib.machine())
    from worker.demo.site import add_article, build_site

    tmp = Path(tempfile.mkdtemp(prefix="ingest-bench-latency-"))
    feeds_path = tmp / "feeds.yaml"
    redis_server = benchlib.start_redis({
        "INGEST_FEEDS": str(feeds_path),
        "INGEST_DISPATCH_EVERY": str(args.interval),
        "INGEST_MIN_INTERVAL": str(args.interval),  # the global floor would otherwise lift the pinned interval
    })
    server = LocalServer(HOST)
    server.httpd.RequestHandlerClass = benchlib.fast_handler()
    server.start()
    workers: list[benchlib.WorkerProc] = []
    rng = random.Random(7)
    latencies: list[float] = []
    waits: list[float] = []  # entry in the feed -> its page requested (dispatch, poll, fan-out)
    work: list[float] = []  # page requested -> article on the stream (fetch, extract, clean, publish)
    try:
        from worker.feeds.feedlist import Feed, save_feeds

        r = benchlib.client()
        site = build_site(server.url(""), n_articles=args.prewarm, seed=3)
        server.routes.update(site.routes)
        save_feeds(feeds_path, [Feed(url=site.feed_url, name="latency demo", interval=args.interval)])

        started = time.monotonic()
        workers.append(benchlib.start_worker("bench-latency-dl", stage="download", beat=True))
        worker = benchlib.start_worker("bench-latency", stage="extract", concurrency=args.concurrency)
        workers.append(worker)
        deadline = time.monotonic() + 120
        while r.xlen(STREAM) < len(site.articles):
            if time.monotonic() > deadline:
                raise TimeoutError(f"pre-warm: {r.xlen(STREAM)} of {len(site.articles)} published; "
                                   f"see {worker.log}")
            time.sleep(0.2)
        print(f"pre-warm: {len(site.articles)} articles published {time.monotonic() - started:.1f} s after the "
              f"worker started (includes the cold-start hold of a new site)")
        last_id = r.xrevrange(STREAM, count=1)[0][0]

        for i in range(args.entries):
            time.sleep(rng.uniform(0, 2 * args.gap))
            art = add_article(site, routes=server.routes)
            appeared_ms = benchlib.redis_time_ms(r)
            path = site.article_path(art.slug)
            fetched: list[float] = []
            server.routes[path] = timed_route(server.routes[path], fetched)
            last_id, published_ms = wait_for(r, art.slug, last_id, args.timeout)
            latencies.append(published_ms - appeared_ms)
            if fetched:
                waits.append(fetched[0] - appeared_ms)
                work.append(published_ms - fetched[0])
            if (i + 1) % 10 == 0:
                print(f"  {i + 1} entries: median {statistics.median(latencies):.0f} ms so far")
    finally:
        for w in workers:
            benchlib.stop_worker(w)
        server.stop()
        redis_server.stop()
    n = len(latencies)
    med, p90, p99 = statistics.median(latencies), benchlib.pct(latencies, 90), benchlib.pct(latencies, 99)
    print(f"latency over {n} entries: min {min(latencies):.0f} ms, median {med:.0f}, p90 {p90:.0f}, p99 {p99:.0f}, "
          f"max {max(latencies):.0f} (dispatch every {args.interval:g} s, feed interval {args.interval:g} s, "
          f"-c {args.concurrency})")
    if waits:
        print(f"  split: entry in feed -> page requested median {statistics.median(waits):.0f} ms (p90 "
              f"{benchlib.pct(waits, 90):.0f}; waiting for the tick and the feed's interval, poll, fan-out), "
              f"page requested -> on the stream median {statistics.median(work):.0f} ms (p90 "
              f"{benchlib.pct(work, 90):.0f}; fetch, extract, clean, publish)")
    print(benchlib.machine())
    print(f"latency n={n} median_ms={med:.0f} p99_ms={p99:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
