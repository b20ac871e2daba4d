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

The articles/s one node sustains, two ways: derived, 1 / Redis CPU per article (Redis runs commands on one
thread); and replayed (``--replay``): phase 1 is run a third time with ``MONITOR`` recording every command the
clients send (not those a script runs inside), then, with the workers stopped and the database emptied each
time, the recording is sent again as fast as ``N`` client processes can (pipelines of 100, the recording split
in N contiguous parts), for N = 1, 2, 4: articles/s = articles recorded / replay time, with Redis's CPU use over
the same time. On this 2-core machine the clients share the cores with Redis, so the replay saturates Redis only
when its CPU use nears one core; the output says how near. Blocking pops (the workers' idle broker polling) and
MULTI/EXEC wrappers are not replayed; a replayed script sees the state its recording saw only roughly (a claim
taken by an earlier command of another client part), so the replay is an estimate of the command mix's cost.

Last line: ``capacity key=value ...``.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import os
import re
import sys
import threading
import time
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

# --- replaying the command mix ------------------------------------------------------------------------------

_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b"}
# blocking pops are the workers' idle polling; MULTI/EXEC only wrap commands that are replayed one by one
NOT_REPLAYED = {b"BRPOP", b"BLPOP", b"BZPOPMIN", b"BLMOVE", b"MULTI", b"EXEC", b"MONITOR", b"INFO", b"CONFIG",
                b"CLIENT", b"HELLO", b"PING", b"SELECT", b"PSUBSCRIBE", b"SUBSCRIBE", b"PUBLISH", b"ECHO"}


def _unescape(raw: bytes) -> bytes:
    """A MONITOR argument as Redis quotes it (sdscatrepr) back to its bytes."""
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i : i + 1] == b"\\" and i + 1 < len(raw):
            nxt = raw[i + 1 : i + 2]
            if nxt == b"x":
                out.append(int(raw[i + 2 : i + 4], 16))
                i += 4
                continue
            out += _ESCAPES.get(nxt, nxt)
            i += 2
            continue
        out += raw[i : i + 1]
        i += 1
    return bytes(out)


class Recorder(threading.Thread):
    """Every command a client sends while it runs, from MONITOR (commands inside scripts left out)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=0.5)
        self.monitor = self.client.monitor()
        self.monitor.__enter__()
        self.commands: list[list[bytes]] = []
        # the thread parses slower than Redis writes: it reads on until this mark, sent when the phase ends
        self.mark = f"capacity-end-{os.getpid()}-{time.time_ns()}".encode()

    def run(self) -> None:
        import redis

        conn = self.monitor.connection
        while True:
            try:
                line = conn.read_response()
            except redis.TimeoutError:
                continue
            if not isinstance(line, bytes) or b"] " not in line:
                continue
            if self.mark in line:
                return
            client, _, rest = line.partition(b"] ")
            if client.endswith(b" lua") or client.endswith(b"lua"):
                continue
            args = [_unescape(a) for a in _ARG.findall(rest)]
            if args and args[0].upper() not in NOT_REPLAYED:
                self.commands.append(args)

    def stop(self, r: Any) -> list[list[bytes]]:
        r.echo(self.mark)
        self.join(300)
        self.client.close()
        return self.commands


def _replay_part(url: str, commands: list[list[bytes]], go: Any, done: Any) -> None:
    import redis

    r = redis.Redis.from_url(url)
    r.ping()
    go.wait()
    errors: collections.Counter[str] = collections.Counter()
    for i in range(0, len(commands), 100):
        pipe = r.pipeline(transaction=False)
        batch = commands[i : i + 100]
        for args in batch:
            pipe.execute_command(*args)
        for args, reply in zip(batch, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(reply, Exception):
                errors[f"{args[0].decode(errors='replace')}: {str(reply)[:60]}"] += 1
    done.put(errors)


def replay(r: Any, url: str, commands: list[list[bytes]], articles: int, redis_pid: int,
           clients: int) -> tuple[float, float, collections.Counter[str]]:
    """Send the recording again from ``clients`` processes on an emptied database; returns (articles/s, share
    of one core Redis used meanwhile, the replies that were errors)."""
    benchlib.flush_keeping_bindings(r)
    ctx = mp.get_context("fork")
    go, done = ctx.Event(), ctx.Queue()
    size = -(-len(commands) // clients)
    procs = [ctx.Process(target=_replay_part, args=(url, commands[k * size : (k + 1) * size], go, done))
             for k in range(clients)]
    for proc in procs:
        proc.start()
    time.sleep(1.0)  # every client connected and waiting
    cpu0 = benchlib.cpu_seconds({"redis": redis_pid})["redis"]
    started = time.perf_counter()
    go.set()
    errors: collections.Counter[str] = collections.Counter()
    for _ in procs:
        errors.update(done.get(timeout=600))
    elapsed = time.perf_counter() - started
    cpu1 = benchlib.cpu_seconds({"redis": redis_pid})["redis"]
    for proc in procs:
        proc.join(30)
    return articles / elapsed, (cpu1 - cpu0) / elapsed, errors


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
    ap.add_argument("--replay", action="store_true", help="also replay the recorded command mix (see above)")
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
            recorded: list[list[bytes]] = []
            if args.replay:
                benchlib.flush_keeping_bindings(r)
                Schedule(r).sync(feeds)
                recorder = Recorder(os.environ["REDIS_URL"])
                recorder.start()
                totals3, _, _, _ = phase(r, feeds, roles, args.timeout)
                recorded = recorder.stop(r)
                n_recorded = sum(v for k, v in totals3.items() if k.startswith(("published:", "duplicates:")))
        finally:
            for worker in (downloads, extracts):
                benchlib.stop_worker(worker)
            server.stop()
        if recorded:
            names = collections.Counter(a[0].upper().decode() for a in recorded)
            print(f"replay: {len(recorded)} commands recorded for {n_recorded} articles "
                  f"({len(recorded) / max(1, n_recorded):.1f} sent by clients an article): "
                  + " ".join(f"{k}={v / max(1, n_recorded):.1f}" for k, v in names.most_common(12)))
            for clients in (1, 2, 4):
                rate, busy, errors = replay(r, os.environ["REDIS_URL"], recorded, n_recorded, redis_server.proc.pid,
                                            clients)
                figures[f"replay_articles_per_s_c{clients}"] = rate
                figures[f"replay_redis_cpu_share_c{clients}"] = busy
                print(f"  {clients} client processes: {rate:.0f} articles/s, Redis busy {busy:.0%} of a core; "
                      f"{sum(errors.values())} error replies {dict(errors.most_common(4))}")
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
