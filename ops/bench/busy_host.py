"""One busy site as production sees it: nine section feeds on one host that answers every request after
``--latency-ms`` (300), a bad line in the feed list, the production politeness defaults (1 request a second,
2 in flight, robots.txt obeyed), through ``ingest run --once``.

    .venv/bin/python ops/bench/busy_host.py [--feeds 9] [--articles 5] [--latency-ms 300]

Prints how long the run took against the floor the host's rate sets (one request a second: the robots.txt,
every feed and every page), each feed's outcome and the reported bad line. Last line:
``busy_host feeds= articles= seconds= floor_s= finished= exit=``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib
from benchlib import ServerProcess

from worker.demo.server import Route
from worker.demo.site import DemoSite, build_many

HOST = "127.0.0.2"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feeds", type=int, default=9)
    ap.add_argument("--articles", type=int, default=5, help="articles per feed")
    ap.add_argument("--latency-ms", type=float, default=300.0)
    args = ap.parse_args(argv)
    print(benchlib.machine())
    sites: list[DemoSite] = []

    def routes_for(host: str, url: Callable[[str, str], str]) -> dict[str, Route]:
        sites.extend(build_many(url(host, ""), args.feeds, args.articles, seed=3))
        return {path: route for site in sites for path, route in site.routes.items()}

    redis_server = benchlib.start_redis()
    server = ServerProcess([HOST], routes_for, latency=args.latency_ms / 1000)
    try:
        feeds = Path(tempfile.mkdtemp(prefix="ingest-bench-busy-")) / "feeds.yaml"
        entries = [f"  - url: {server.url(HOST, s.feed_path)}\n    name: section {i}" for i, s in enumerate(sites)]
        feeds.write_text("\n".join(["feeds:", *entries, '  - url: "not a url"']) + "\n")
        env = os.environ | {"INGEST_HOST_RATE": "1", "INGEST_HOST_CONCURRENCY": "2", "INGEST_ROBOTS_OBEY": "true"}
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "worker.cli", "run", "--once", "--json", "--feeds", str(feeds)],
                              capture_output=True, text=True, env=env)
        seconds = time.monotonic() - started
    finally:
        server.stop()
        redis_server.stop()
    summary = json.loads(done.stdout)
    outcomes: dict[str, int] = {}
    for row in summary["feed_outcomes"]:
        outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + 1
    floor = 1 + args.feeds * (1 + args.articles)  # robots.txt, then each feed and page at one request a second
    print(f"run --once: exit {done.returncode} in {seconds:.1f} s (the host's rate allows no less than {floor} s); "
          f"feeds {outcomes}; bad lines reported: {summary['invalid_entries']}")
    print(f"counts {json.dumps(summary['counts'])}")
    print(benchlib.machine())
    print(f"busy_host feeds={args.feeds} articles={args.feeds * args.articles} seconds={seconds:.1f} "
          f"floor_s={floor} finished={summary['finished']} exit={done.returncode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
