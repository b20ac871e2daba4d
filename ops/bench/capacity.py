"""Capacity of one Redis node, measured on the whole pipeline: what the state costs per feed, per remembered
article and per site, Redis commands, network bytes and Redis CPU per article, and per poll that finds nothing
new; from these, what a deployment of 1 000 / 100 000 / 1 000 000 feeds needs.

    .venv/bin/python ops/bench/capacity.py [--hosts 36] [--per-host 10] [--processes 2]

Starts its own redis-server (nothing else uses it), serves throughput.py's pages (big9 and aeb when
``../shared/eval`` is there) from one loopback host per group, one feed each, and runs both stages as production
does (a download worker, an extract worker of ``--processes`` processes). Phase 1 polls every feed once: each
page goes through fetch, extract, site memory, clean, same story and publish. Phase 2 polls every feed again:
the server answers 304, as most polls of a real feed end. Between the first poll sent and the last article
(phase 1) or the last poll done (phase 2) it reads ``INFO stats`` and ``INFO commandstats`` deltas and the CPU
time of the redis-server process (/proc), which includes its network I/O. The benchmark itself checks for the
end once a second (a few commands, counted in). Idle workers' broker polling is counted in: it is part of
the load. After phase 1 every key is sized with ``MEMORY USAGE`` and grouped by what it belongs to.

The articles/s one node sustains is derived: 1 / Redis CPU per article (Redis runs commands on one thread). On
this 2-core machine the workers take both cores, so Redis cannot be driven to saturation here without the
workers starving it; the figure is the ceiling of its main thread, not a measured saturation.

Last line: ``capacity key=value ...``.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib
import throughput

# Per-feed state: its schedule entry and hash, the feed list kept in Redis, WebSub state.
FEED_KINDS = ("feed", "feeds", "websub")
# Per-site (host) state: site memory, politeness, robots.txt.
SITE_KINDS = ("site", "host", "robots")


def kind_of(r: Any, name: bytes, prefix: str) -> str:
    text = name.decode("utf-8", "replace")
    if text.startswith(prefix + ":"):
        return text[len(prefix) + 1 :].split(":", 1)[0]
    return "streams" if r.type(name) == b"stream" else "broker/other"


def memory_by_kind(r: Any, prefix: str, long_ttl: float) -> dict[str, tuple[int, int, int]]:
    """kind -> (keys, bytes, bytes of keys that live longer than ``long_ttl`` seconds or forever)."""
    out: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    for name in r.scan_iter(count=1000):
        used = int(r.memory_usage(name, samples=0) or 0)
        ttl = r.ttl(name)
        entry = out[kind_of(r, name, prefix)]
        entry[0] += 1
        entry[1] += used
        if ttl < 0 or ttl > long_ttl:
            entry[2] += used
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


def stats(r: Any) -> dict[str, float]:
    info = r.info("stats")
    calls = sum(int(v["calls"]) for v in r.info("commandstats").values())
    return {"in": float(info["total_net_input_bytes"]), "out": float(info["total_net_output_bytes"]),
            "commands": float(calls)}


def command_mix(r: Any) -> dict[str, tuple[int, int]]:
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for k, v in r.info("commandstats").items()}


def phase(r: Any, feeds: list[Any], roles: dict[str, int], timeout: float) -> tuple[
        dict[str, int], dict[str, float], dict[str, tuple[int, int]], dict[str, float]]:
    """Poll every feed once and wait for the run's end; returns the run totals, the INFO deltas, the command
    mix (calls, usec) and the CPU seconds each role (redis, the workers) used."""
    from worker.tasks import poll_feed

    run_id = benchlib.new_run(r, [f.id for f in feeds])
    r.config_resetstat()
    before = stats(r)
    cpu0 = benchlib.cpu_seconds(roles)
    for feed in feeds:
        poll_feed.apply_async((feed.id, run_id), queue="poll")
    totals = benchlib.wait_run(r, run_id, timeout, step=1.0)
    cpu1 = benchlib.cpu_seconds(roles)
    after = stats(r)
    mix = command_mix(r)
    return totals, {k: after[k] - before[k] for k in after}, mix, {k: cpu1[k] - cpu0[k] for k in cpu0}


GB = 1e9


def deployments(f: dict[str, float], args: argparse.Namespace) -> None:
    """What 1 000 / 100 000 / 1 000 000 feeds need, from the measured figures and the stated assumptions."""
    print(f"deployments (assumptions: {args.articles_per_feed_day:g} new articles per feed a day, peak "
          f"{args.peak:g}x the day's mean; a poll every {args.poll_interval:g} s per feed, nearly all finding "
          f"nothing new; {args.feeds_per_site:g} feeds per site; seen-set and story index kept "
          f"{args.seen_days:g} days (INGEST_SEEN_TTL_DAYS), title/near-duplicate index 2 days; site memory "
          f"{args.site_mb:g} MB a site; seen-set {args.seen_bytes:g} B an article (dedup_memory.py), in two sets; "
          f"the articles stream at its MAXLEN; a Redis node used to 70 % of its main thread and "
          f"{args.node_gb:g} GB; worker cores used to 70 %)")
    print("  feeds | sites | articles/s peak | polls/s | Redis memory GB (feeds + articles + sites + streams) "
          "| Redis main thread (cores) | nodes (memory, CPU) | worker cores | network MB/s")
    for feeds in (1_000, 100_000, 1_000_000):
        sites = feeds / args.feeds_per_site
        per_day = feeds * args.articles_per_feed_day
        peak = per_day / 86400 * args.peak
        polls = feeds / args.poll_interval
        mem_feeds = feeds * f["feed_bytes"]
        mem_articles = per_day * (args.seen_days * (2 * args.seen_bytes + f["story_bytes_kept"])
                                  + 2 * f["story_bytes_48h"])
        mem_sites = sites * args.site_mb * 1e6
        mem_streams = args.stream_maxlen * f["stream_bytes_per_article"]  # MAXLEN keeps the stream at its cap
        memory = mem_feeds + mem_articles + mem_sites + mem_streams
        redis_cores = (peak * f["redis_cpu_ms_per_article"] + polls * f["redis_cpu_ms_per_empty_poll"]) / 1000
        nodes_mem, nodes_cpu = -(-memory // (args.node_gb * GB)), -(-redis_cores // 0.7)
        workers = (peak * f["worker_cpu_ms_per_article"] + polls * f["worker_cpu_ms_per_empty_poll"]) / 1000 / 0.7
        net = (peak * (f["bytes_in_per_article"] + f["bytes_out_per_article"])
               + polls * (f["bytes_in_per_empty_poll"] + f["bytes_out_per_empty_poll"])) / 1e6
        print(f"  {feeds:>9,} | {sites:>7,.0f} | {peak:>7.1f} | {polls:>7.1f} | {memory / GB:.1f} "
              f"({mem_feeds / GB:.2f} + {mem_articles / GB:.1f} + {mem_sites / GB:.1f} + {mem_streams / GB:.2f}) "
              f"| {redis_cores:.2f} | {max(nodes_mem, nodes_cpu):.0f} ({nodes_mem:.0f}, {nodes_cpu:.0f}) "
              f"| {workers:.1f} | {net:.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=36)
    ap.add_argument("--per-host", type=int, default=10)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--articles-per-feed-day", type=float, default=20.0)
    ap.add_argument("--peak", type=float, default=3.0, help="peak articles/s over the day's mean")
    ap.add_argument("--poll-interval", type=float, default=900.0, help="INGEST_DEFAULT_INTERVAL")
    ap.add_argument("--feeds-per-site", type=float, default=5.0)
    ap.add_argument("--seen-days", type=float, default=30.0)
    ap.add_argument("--seen-bytes", type=float, default=15.5, help="seen-set bytes an article (dedup_memory.py)")
    ap.add_argument("--site-mb", type=float, default=0.11,
                    help="site memory of a site of 100 pages a day (dedup_memory.py --pages-per-day 100)")
    ap.add_argument("--stream-maxlen", type=float, default=100_000, help="INGEST_STREAM_MAXLEN of the articles stream")
    ap.add_argument("--node-gb", type=float, default=25.0, help="memory a Redis node may use")
    args = ap.parse_args(argv)

    print(benchlib.machine())
    by_group, source = throughput.bench_pages(args.hosts, args.per_host, None)
    env = {"INGEST_HOST_CONCURRENCY": "2", "INGEST_HOST_RATE": "0", "INGEST_ROBOTS_OBEY": "true",
           "INGEST_CLEAN_HOLD_SECONDS": "0"}
    redis_server = benchlib.start_redis(env)
    from worker.core.keys import prefix
    from worker.core.settings import get_settings
    from worker.feeds.feedlist import Feed
    from worker.poll.schedule import Schedule

    settings = get_settings()
    figures: dict[str, float] = {}
    try:
        server, by_host = throughput.serve(by_group, 0.0)
        r = benchlib.client()
        r.flushdb()
        downloads = benchlib.start_worker("cap-dl", stage="download", env=env)
        extracts = benchlib.start_worker("cap-ex", stage="extract", concurrency=args.processes, env=env)
        try:
            feeds = [Feed(url=server.url(host, "/feed.xml"), name=host) for host in by_host]
            Schedule(r).sync(feeds)
            n_feeds, n_sites = len(feeds), len(by_host)
            roles = {"redis": redis_server.proc.pid, "workers": downloads.proc.pid,
                     "extract": extracts.proc.pid}
            totals, delta, mix, cpu = phase(r, feeds, roles, args.timeout)
            n_articles = sum(v for k, v in totals.items() if k.startswith(("published:", "duplicates:")))
            print(f"phase 1 ({source}): {n_feeds} feeds, {n_sites} sites, {n_articles} articles published; "
                  f"run totals {benchlib.jdump(totals)}")
            per = max(1, n_articles)
            figures |= {"commands_per_article": delta["commands"] / per, "bytes_in_per_article": delta["in"] / per,
                        "bytes_out_per_article": delta["out"] / per,
                        "redis_cpu_ms_per_article": cpu["redis"] * 1000 / per,
                        "worker_cpu_ms_per_article": (cpu["workers"] + cpu["extract"]) * 1000 / per,
                        "script_calls_per_article": mix.get("evalsha", (0, 0))[0] / per,
                        "redis_usec_in_commands_per_article": sum(u for _, u in mix.values()) / per}
            top = sorted(mix.items(), key=lambda kv: -kv[1][1])[:14]
            print("  per article (commands: every command Redis ran, those inside scripts included): "
                  + " ".join(f"{k}={v:.1f}" for k, v in figures.items()))
            print("  command mix per article (calls, usec): "
                  + " ".join(f"{k}={c / per:.1f}/{u / per:.0f}us" for k, (c, u) in top))

            long_ttl = settings.title_window_hours * 3600 + 60
            memory = memory_by_kind(r, prefix(), long_ttl)
            print("  memory by kind after phase 1 (keys, bytes, bytes of keys kept longer than the title window):")
            for kind, (keys, used, kept) in sorted(memory.items(), key=lambda kv: -kv[1][1]):
                print(f"    {kind:<14} {keys:>6} keys {used:>10} B  {kept:>10} B")

            def total(kinds: tuple[str, ...], column: int) -> int:
                return sum(v[column] for k, v in memory.items() if k in kinds)

            figures |= {
                "feed_bytes": total(FEED_KINDS, 1) / n_feeds,
                # the same-story index: near-duplicate bands and titles for the title window (48 h), exact text and
                # URLs for INGEST_SEEN_TTL_DAYS; the seen-set's bytes at scale come from dedup_memory.py (small
                # runs show its fixed overhead)
                "story_bytes_48h": (total(("lsh", "story", "claim"), 1) - total(("story",), 2)) / per,
                "story_bytes_kept": total(("story",), 2) / per,
                "stream_bytes_per_article": total(("streams",), 1) / per,
                "site_bytes_10_pages": total(SITE_KINDS, 1) / n_sites,
            }

            totals2, delta2, mix2, cpu2 = phase(r, feeds, roles, args.timeout)
            print(f"phase 2: every feed polled again: run totals {benchlib.jdump(totals2)}")
            figures |= {"commands_per_empty_poll": delta2["commands"] / n_feeds,
                        "bytes_in_per_empty_poll": delta2["in"] / n_feeds,
                        "bytes_out_per_empty_poll": delta2["out"] / n_feeds,
                        "redis_cpu_ms_per_empty_poll": cpu2["redis"] * 1000 / n_feeds,
                        "worker_cpu_ms_per_empty_poll": (cpu2["workers"] + cpu2["extract"]) * 1000 / n_feeds}
            top2 = sorted(mix2.items(), key=lambda kv: -kv[1][0])[:10]
            print("  per empty poll: " + " ".join(f"{k}={figures[k]:.2f}" for k in figures if "empty_poll" in k)
                  + "; mix " + " ".join(f"{k}={c / n_feeds:.1f}" for k, (c, _) in top2))
        finally:
            for worker in (downloads, extracts):
                benchlib.stop_worker(worker)
            server.stop()
    finally:
        redis_server.stop()
    figures["articles_per_s_per_node"] = 1000 / figures["redis_cpu_ms_per_article"]
    print(f"one Redis node's main thread: {figures['articles_per_s_per_node']:.0f} articles/s "
          f"(1 / Redis CPU per article; on {os.cpu_count()} cores shared with the workers)")
    deployments(figures, args)
    print(benchlib.machine())
    print("capacity " + " ".join(f"{k}={v:.2f}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
