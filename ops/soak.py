"""Soak test: many feeds, thousands of pages (a share of them faulty), two real workers, one of them killed
with SIGKILL mid-run and restarted; then every expected article must be published exactly once.

    python ops/soak.py [--feeds 200 --pages 3000 --fault-share 0.1 --seed 1 --timeout 1800]

Starts a throwaway Redis and a local HTTP server (the demo site generator, ``build_many``), two "machines"
each running both stages (a download worker of 16 threads, an extract worker of one process), sends beat's
sweep every 10 s, polls every feed once, kills the first machine's workers (both process groups) once about a third of
the articles are out, restarts them once their unacknowledged messages are past the visibility timeout (a
restarting worker restores them), and waits until nothing is queued or unacknowledged.

Prints the articles expected (pages behind no fault), published, duplicated (the same id or URL twice on the
stream), lost (expected but neither published, marked as a duplicate story, nor dead-lettered) and
dead-lettered; the last line is ``soak expected=N published=N duplicated=N lost=N dead_lettered=N``. Exits 1
when anything was lost or duplicated.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from celery import Celery  # noqa: E402
from kombu import Queue  # noqa: E402

SWEEP_EVERY = 10.0  # seconds between sweeps (beat's every 30 s; the soak's pages live 120 s)
QUEUES = ("poll", "fetch", "extract", "publish")  # as worker.app (not imported: it would bind to a Redis at import)
FAULTS = ("5xx", "slow", "truncated", "binary")
HOST = os.uname().nodename

Handler = Callable[[BaseHTTPRequestHandler], None]


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- faulty routes ------------------------------------------------------------------------------------------------


def _quiet(route: Handler) -> Handler:
    def run(handler: BaseHTTPRequestHandler) -> None:
        try:
            route(handler)
        except OSError:  # the client gave up (timeouts): expected
            handler.close_connection = True
            handler.wfile = io.BytesIO()

    return run


def slow_route(body: bytes, every: float) -> Handler:
    """Headers at once, then the page one small chunk every ``every`` seconds: beyond any total timeout."""

    def run(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for i in range(0, min(len(body), 64 * 40), 64):
            handler.wfile.write(body[i : i + 64])
            handler.wfile.flush()
            time.sleep(every)
        handler.close_connection = True

    return _quiet(run)


def truncated_route(body: bytes) -> Handler:
    """Announces the whole page, sends half of it, closes the connection."""

    def run(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body[: len(body) // 2])
        handler.wfile.flush()
        handler.close_connection = True

    return _quiet(run)


# --- the stack ------------------------------------------------------------------------------------------------------


class Workers:
    def __init__(self, url: str, logdir: Path, env: dict[str, str]) -> None:
        self.url, self.logdir, self.env = url, logdir, env
        self.app = Celery("soak-sender", broker=url, set_as_current=False)
        self.app.conf.update(task_serializer="json", accept_content=["json"],
                             task_queues=[Queue(q) for q in QUEUES], task_default_queue="fetch")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        """One machine: both stages' workers (a download worker on threads, an extract worker of one
        process), as ``ingest worker`` starts them."""
        from worker.app import stages

        for stage, concurrency in (("download", 16), ("extract", 1)):
            args = stages()[stage].celery_args(node=f"{name}-{stage}@%h", loglevel="WARNING",
                                               concurrency=concurrency)
            self._start(f"{name}-{stage}", args)

    def _start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the worker
        metrics_dir = tempfile.mkdtemp(prefix=f"prom-{name}-", dir=self.logdir)
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.app", *args, "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=os.environ | self.env | {"PROMETHEUS_MULTIPROC_DIR": metrics_dir},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.procs[name] = proc
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"worker {name} exited with {proc.returncode}; see {log.name}")
            if self.app.control.ping(destination=[f"{name}@{HOST}"], timeout=0.5):
                return proc
        raise SystemExit(f"worker {name} did not answer a ping; see {log.name}")

    def kill(self, name: str) -> None:
        """kill -9 of a machine: both its stages' process groups at once."""
        for worker, proc in self.procs.items():
            if worker.startswith(f"{name}-") and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.app.close()


# --- accounting ------------------------------------------------------------------------------------------------------


def stream_messages(r: redis.Redis, stream: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    last = "-"
    while True:
        batch = r.xrange(stream, min=last, count=5000)
        if last != "-":
            batch = batch[1:]
        if not batch:
            return out
        out += [json.loads(fields[b"data"]) for _, fields in batch]
        last = batch[-1][0].decode()


def outstanding(r: redis.Redis) -> int:
    """Messages queued or delivered but not acknowledged (acks_late: executing and ETA tasks included)."""
    return sum(int(r.llen(q)) for q in QUEUES) + int(r.hlen("unacked"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--feeds", type=int, default=200)
    ap.add_argument("--pages", type=int, default=3000)
    ap.add_argument("--fault-share", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds")
    ap.add_argument("--visibility-timeout", type=float, default=30.0)
    ap.add_argument("--no-kill", action="store_true", help="do not kill a worker (baseline)")
    args = ap.parse_args()

    from worker.core.redisconn import RedisServer

    server = RedisServer()
    os.environ["REDIS_URL"] = server.url
    os.environ["INGEST_ALLOW_PRIVATE_NETWORKS"] = "true"
    from worker.core import runs
    from worker.core.settings import LOCAL_UNLIMITED_ENV, get_settings
    from worker.core.urls import canonicalize
    from worker.demo.server import LocalServer, Response
    from worker.demo.site import build_many
    from worker.feeds.feedlist import Feed
    from worker.poll.parse import parse_feed
    from worker.poll.schedule import Schedule
    from worker.publish.deadletter import DeadLetters

    get_settings.cache_clear()
    settings = get_settings()
    logdir = Path(tempfile.mkdtemp(prefix="ingest-soak-"))
    http = LocalServer().start()
    # Workers giving up on slow and truncated pages reset connections; that is the point, not news.
    http.httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
    r = redis.Redis.from_url(server.url)
    total_timeout = 2.0
    env = {
        "REDIS_URL": server.url,
        "INGEST_ALLOW_PRIVATE_NETWORKS": "true",
        "INGEST_METRICS_PORT": "0",
        "INGEST_LOG_FORMAT": "json",
        "INGEST_VISIBILITY_TIMEOUT": str(args.visibility_timeout),
        "INGEST_TOTAL_TIMEOUT": str(total_timeout),
        "INGEST_READ_TIMEOUT": str(total_timeout),
        "INGEST_CLEAN_HOLD_SECONDS": "5",
        "INGEST_PAGE_TTL": "120",  # the sweep re-sends hand-offs not done after half of it
        **LOCAL_UNLIMITED_ENV,  # 200 feeds on one local host: politeness would only stretch the soak
    }
    workers = Workers(server.url, logdir, env)
    started = time.monotonic()
    try:
        # --- the sites, and which pages are faulty
        per_site = max(1, args.pages // max(1, args.feeds))
        sites = build_many(http.url(""), n_sites=args.feeds, articles_per_site=per_site, seed=args.seed)
        feeds: list[Feed] = []
        pages: dict[str, str] = {}  # canonical URL -> route path
        for i, site in enumerate(sites):
            http.routes.update(site.routes)
            feed_url = http.url(site.feed_path)
            feeds.append(Feed(url=feed_url, name=f"soak-{i}"))
            feed_body = site.routes[site.feed_path].body
            for entry in parse_feed(feed_body, url=feed_url, content_type="application/rss+xml").entries:
                pages[canonicalize(entry.link)] = urlsplit(entry.link).path
        rng = random.Random(args.seed)
        ordered = sorted(pages)
        faulty_urls = rng.sample(ordered, int(len(ordered) * args.fault_share))
        faults: dict[str, str] = {}
        for n, url in enumerate(faulty_urls):
            kind = FAULTS[n % len(FAULTS)]
            faults[url] = kind
            path = pages[url]
            body = http.routes[path]
            assert isinstance(body, Response)
            if kind == "5xx":
                http.routes[path] = Response(b"<html><body>busy</body></html>", status=503)
            elif kind == "slow":
                http.routes[path] = slow_route(body.body, every=0.25)
            elif kind == "truncated":
                http.routes[path] = truncated_route(body.body)
            else:
                http.routes[path] = Response(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + rng.randbytes(4000),
                                             "application/pdf")
        expected = set(pages) - set(faults)
        by_kind = collections.Counter(faults.values())
        say(f"{len(feeds)} feeds, {len(pages)} pages, {len(faults)} faulty "
            f"({', '.join(f'{k}={by_kind[k]}' for k in FAULTS)}); logs in {logdir}")

        # --- workers, polls
        workers.start("soak-a")
        workers.start("soak-b")
        Schedule(r).sync(feeds)
        run_id = uuid.uuid4().hex[:12]
        runs.start(r, run_id, [f.id for f in feeds])
        for feed in feeds:
            workers.app.send_task("worker.tasks.poll_feed", args=(feed.id, run_id), queue="poll")
        say(f"polled {len(feeds)} feeds (run {run_id})")

        # --- kill one worker a third of the way, restart it past the visibility timeout
        killed_at: float | None = None
        restarted = args.no_kill
        quiet_since: float | None = None
        last_report = last_sweep = 0.0
        deadline = time.monotonic() + args.timeout
        while True:
            now = time.monotonic()
            if now > deadline:
                say("TIMEOUT: giving up waiting")
                break
            done = int(r.xlen(settings.default_stream)) if r.exists(settings.default_stream) else 0
            if killed_at is None and not args.no_kill and done >= len(expected) // 3:
                workers.kill("soak-a")
                killed_at = now
                say(f"SIGKILLed worker soak-a with {done} published, {int(r.hlen('unacked'))} unacknowledged")
            if killed_at is not None and not restarted and now - killed_at > args.visibility_timeout + 1:
                workers.start("soak-a")
                restarted = True
                say("restarted soak-a (it restores the unacknowledged messages past the visibility timeout)")
            if now - last_sweep > SWEEP_EVERY:
                # what beat does in production (it is not run here: its dispatcher would sync the project's own
                # feed list): re-send hand-offs whose extract message a kill made kombu lose
                workers.app.send_task("worker.tasks.sweep", queue="poll")
                last_sweep = now
            left = outstanding(r)
            pending = runs.pending(r, run_id)
            if now - last_report > 15:
                say(f"published {done}, outstanding messages {left}, run pending {pending}")
                last_report = now
            if restarted and left == 0:
                quiet_since = quiet_since or now
                # Finished: nothing queued or unacknowledged for a while (the run counter may be off by the
                # tasks a kill interrupted, so it is reported, not trusted); with pages still pending, long
                # enough for the sweep to find a hand-off whose message was lost (half the pages' TTL).
                if now - quiet_since > (3 if pending <= 0 else 90):
                    break
            else:
                quiet_since = None
            time.sleep(0.5)

        # --- accounting
        articles = stream_messages(r, settings.default_stream)
        dups = stream_messages(r, settings.duplicate_stream) if r.exists(settings.duplicate_stream) else []
        seen_ids: set[str] = set()
        seen_urls: set[str] = set()
        duplicated = 0
        for a in articles:
            if a["id"] in seen_ids or a["canonical_url"] in seen_urls:
                duplicated += 1
            seen_ids.add(a["id"])
            seen_urls.add(a["canonical_url"])
        marked = {a["canonical_url"] for a in dups}
        letters = DeadLetters(r, settings).list(count=1_000_000)
        dead_urls: set[str] = set()
        for dl in letters:
            try:
                dead_urls.add(canonicalize(dl.url))
            except ValueError:
                dead_urls.add(dl.url)
        reasons = collections.Counter(f"{dl.stage}:{dl.reason}" for dl in letters)
        lost = sorted(expected - seen_urls - marked - dead_urls)
        faulty_unaccounted = sorted(set(faults) - dead_urls - seen_urls - marked)
        expected_dead = sorted(expected & dead_urls - seen_urls)
        published_expected = len(expected & seen_urls)
        totals = runs.totals(r, run_id)

        print()
        print(f"feeds: {len(feeds)}  pages: {len(pages)}  faulty: {len(faults)}  "
              f"seconds: {time.monotonic() - started:.0f}  killed+restarted: {killed_at is not None}")
        print(f"articles expected (non-faulty pages): {len(expected)}")
        print(f"published: {len(seen_ids)} (of them expected: {published_expected}; "
              f"faulty pages published anyway: {len(set(faults) & seen_urls)})")
        print(f"marked as the same story (on {settings.duplicate_stream}): {len(dups)}")
        print(f"duplicated (same id or URL twice on {settings.default_stream}): {duplicated}")
        print(f"lost (expected, neither published, marked nor dead-lettered): {len(lost)}")
        for url in lost[:20]:
            print(f"  lost: {url}")
        print(f"dead-lettered: {len(letters)} ({', '.join(f'{k}={v}' for k, v in sorted(reasons.items()))})")
        print(f"expected pages dead-lettered (healthy page refused): {len(expected_dead)}")
        for url in expected_dead[:10]:
            print(f"  dead: {url}")
        print(f"faulty pages neither dead-lettered nor published: {len(faulty_unaccounted)}")
        print(f"run counters: {json.dumps(totals)}")
        print(f"still outstanding messages: {outstanding(r)}")
        print(f"soak expected={len(expected)} published={len(seen_ids)} duplicated={duplicated} "
              f"lost={len(lost)} dead_lettered={len(letters)}")
        return 0 if not lost and not duplicated else 1
    finally:
        workers.stop_all()
        http.stop()
        r.close()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
