"""Redis memory of the dedup structures: bytes per remembered article id in ``BucketSet`` (1 000 000 synthetic
ids), the cost of one text signature, and, when ``worker/clean/memory.py`` is present, whether one site's line
memory stays bounded as its pages keep coming.

    REDIS_URL=redis://127.0.0.1:6379/13 .venv/bin/python ops/bench/dedup_memory.py [--ids N] [--pages N]
        [--pages-per-day N]

``--pages-per-day`` spreads the site's pages over simulated days (the site memory's buckets turn over, so the
figures are the steady state of every live bucket); without it they all fall in one bucket (its caps).

Flushes only the database of REDIS_URL (default db 13), before and after. ``used_memory`` is server-wide, so
run it on an otherwise quiet Redis for exact figures. The last line is ``seen_set_bytes_per_article=NN.N``.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import random
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from worker.core.keys import key, site_part
from worker.core.settings import get_settings
from worker.dedup.buckets import BucketSet
from worker.dedup.fingerprint import Fingerprint

DEFAULT_URL = "redis://127.0.0.1:6379/13"


def used_memory(r: redis.Redis) -> int:
    return int(r.info("memory")["used_memory"])


def bench_seen_set(r: redis.Redis, n: int) -> float:
    """Remember n synthetic article ids; return bytes of Redis memory per id."""
    seen = BucketSet(r, "seen", get_settings().seen_ttl_days * 86400)
    rng = random.Random(1)
    ids = [f"{rng.getrandbits(64):016x}" for _ in range(n)]
    seen.contains_many(ids[:1])  # creates the generation's meta key outside the measurement
    before = used_memory(r)
    started = time.perf_counter()
    chunk = 100_000
    for i in range(0, n, chunk):
        added = seen.add_many(ids[i : i + chunk])
        assert all(added), "synthetic ids collided"
    elapsed = time.perf_counter() - started
    after = used_memory(r)
    sample = next(k for k in r.scan_iter(match=key("seen", "*"), count=1000) if b":m:" not in k)
    per = (after - before) / n
    print(f"seen set: {n} ids in {elapsed:.1f} s ({elapsed / n * 1e6:.1f} us/id), {r.dbsize()} keys, "
          f"encoding {r.object('encoding', sample)!r}")
    print(f"used_memory before={before} after={after} delta={after - before} bytes_per_article={per:.1f}")
    assert all(seen.contains_many(ids[:1000]))
    return per


def bench_signature() -> None:
    rng = random.Random(2)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10)))
             for _ in range(5000)]
    text = " ".join(rng.choice(vocab) for _ in range(1000))
    Fingerprint.of("warm up", text)
    runs = 300
    started = time.perf_counter()
    for _ in range(runs):
        Fingerprint.of("A headline of several words", text)
    print(f"fingerprint (normalise, exact hash, 128-value MinHash) of a 1000-word text: "
          f"{(time.perf_counter() - started) / runs * 1000:.2f} ms")


def site_keys_bytes(r: redis.Redis, site: str) -> tuple[int, int, dict[str, int]]:
    """Keys of the site, their bytes (MEMORY USAGE), and the bytes by kind (pages, lines, titles)."""
    keys = list(r.scan_iter(match=key("site", site_part(site), "*"), count=1000))
    by_kind: dict[str, int] = {}
    for k in keys:
        kind = k.decode().removeprefix(key("site", site_part(site), "")).split(":")[0]
        by_kind[kind] = by_kind.get(kind, 0) + int(r.memory_usage(k, samples=0) or 0)
    return len(keys), sum(by_kind.values()), by_kind


class SimulatedClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def bench_site_memory(r: redis.Redis, pages: int, pages_per_day: float) -> int:
    if importlib.util.find_spec("worker.clean.memory") is None:
        print("site memory: worker/clean/memory.py absent, skipped")
        return 0
    from worker.clean.memory import SiteMemory

    clock = SimulatedClock(time.time()) if pages_per_day else time.time
    memory = SiteMemory(r, get_settings(), clock=clock)
    site = "bench-news.example"
    # each line's slot (the element path of its block), where the memory learns slots too
    with_slots = "slots" in inspect.signature(memory.observe).parameters
    rng = random.Random(3)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10)))
             for _ in range(5000)]

    def sentence(k: int) -> str:
        return " ".join(rng.choice(vocab) for _ in range(k)).capitalize() + "."

    template = ["Home | World | Business | Sport", "Follow us on social media", "© 2024 Bench News Ltd"]
    headlines = [sentence(8) for _ in range(200)]
    checkpoints = {1000, 5000, pages}
    before = used_memory(r)
    started = time.perf_counter()
    for i in range(1, pages + 1):
        # Every page: the template, a few sidebar headlines drifting over time, and its own article lines.
        sidebar = headlines[(i // 50) % 150 : (i // 50) % 150 + 5]
        body = [sentence(rng.randint(10, 25)) for _ in range(rng.randint(8, 20))]
        stamp = f"Updated at {i % 24:02d}h{i % 60:02d}"
        text = "\n".join([*template[:1], *body, *sidebar, *template[1:], stamp])
        title = headlines[i % len(headlines)] if i % 3 == 0 else sentence(8)
        slots = ["nav", *["body"] * len(body), *["sidebar"] * len(sidebar), "follow", "footer", "stamp"]
        memory.observe(site, f"{i:016x}", text, title, rng.sample(headlines, 10),
                       **({"slots": slots} if with_slots else {}))
        if isinstance(clock, SimulatedClock):
            clock.now += 86400 / pages_per_day
            # Redis's clock does not move with the simulated one: drop the buckets no longer read, as their TTL
            # (the end of their last live bucket, plus a few minutes) does
            oldest = memory._buckets()[-1]
            for k in r.scan_iter(match=key("site", site_part(site), "*", "*"), count=1000):
                bucket = k.rsplit(b":", 1)[-1]
                if bucket.isdigit() and int(bucket) < oldest:
                    r.delete(k)
        if i in checkpoints:
            n_keys, size, by_kind = site_keys_bytes(r, site)
            print(f"site memory after {i:>6} pages: {n_keys} keys, {size} bytes (MEMORY USAGE; "
                  + ", ".join(f"{kind} {b}" for kind, b in sorted(by_kind.items()))
                  + f"), used_memory delta {used_memory(r) - before}")
    print(f"site memory: {(time.perf_counter() - started) / pages * 1000:.2f} ms per observe")
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=20_000)
    parser.add_argument("--pages-per-day", type=float, default=0.0)
    args = parser.parse_args()
    url = os.environ.get("REDIS_URL") or DEFAULT_URL
    r = redis.Redis.from_url(url)
    r.flushdb()  # only this database: the benchmark's own
    try:
        bench_signature()
        site_bytes = bench_site_memory(r, args.pages, args.pages_per_day) if args.pages else 0
        r.flushdb()
        per = bench_seen_set(r, args.ids) if args.ids else float("nan")
    finally:
        r.flushdb()
    print(f"site_memory_bytes={site_bytes} seen_set_bytes_per_article={per:.1f}")


if __name__ == "__main__":
    main()
