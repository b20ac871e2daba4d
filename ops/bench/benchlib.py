"""Shared plumbing of the benchmarks in ``ops/bench``: a throwaway Redis, real Celery worker processes, a local
HTTP server in its own process, RSS feeds, the big9 pages, and run bookkeeping through ``worker.core.runs``.

Import order matters: ``worker.app`` reads ``REDIS_URL`` when it is imported, so a benchmark calls
:func:`start_redis` before it imports ``worker.app`` or ``worker.tasks`` (done lazily here).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from worker.core.redisconn import RedisServer, free_port  # noqa: E402
from worker.core.settings import LOCAL_UNLIMITED_ENV, get_settings  # noqa: E402
from worker.demo.server import Response, Route  # noqa: E402

SHARED_EVAL = ROOT.parent / "shared" / "eval"
LOG_DIR = Path(tempfile.gettempdir()) / "ingest-bench"

# The worker environment every benchmark uses: local pages are allowed, no metrics HTTP port.
BASE_ENV = {
    "INGEST_ALLOW_PRIVATE_NETWORKS": "true",
    "INGEST_METRICS_PORT": "0",
    "INGEST_LOG_FORMAT": "json",
    # every page comes from one local host: per-host politeness would measure the limiter, not the pipeline
    **LOCAL_UNLIMITED_ENV,
}


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return f"machine: nproc={os.cpu_count()} cpu={model!r} loadavg={load[0]:.2f},{load[1]:.2f},{load[2]:.2f}"


def start_redis(extra_env: Mapping[str, str] | None = None) -> RedisServer:
    """A throwaway redis-server; REDIS_URL (and BASE_ENV) set for this process and the workers it starts."""
    server = RedisServer()
    os.environ["REDIS_URL"] = server.url
    os.environ.update(BASE_ENV)
    os.environ.update(extra_env or {})
    get_settings.cache_clear()
    return server


def client() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"])


def flush_keeping_bindings(r: redis.Redis) -> None:
    """Empty the database but kombu's exchange bindings (a running worker needs them)."""
    keys = [k for k in r.scan_iter(count=1000) if not k.startswith(b"_kombu.binding")]
    for i in range(0, len(keys), 500):
        r.delete(*keys[i : i + 500])


# --- worker processes ---------------------------------------------------------------------------------------


@dataclass
class WorkerProc:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


def start_worker(name: str, *, concurrency: int | None = None, env: Mapping[str, str] | None = None,
                 beat: bool = False, stage: str = "extract", queues: str | None = None,
                 loglevel: str = "WARNING") -> WorkerProc:
    """A stage's worker (``worker.app.stages``: its queues, pool and default size) as a child process; returns
    once it answers a ping. ``queues`` overrides the stage's (one prefork worker for every queue: the
    benchmarks of a single process)."""
    from worker.app import app, stages

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"worker-{name}.log"
    args = stages()[stage].celery_args(node=f"{name}@%h", loglevel=loglevel, concurrency=concurrency)
    if queues is not None:
        args[args.index("-Q") + 1] = queues
    cmd = [sys.executable, "-m", "celery", "-A", "worker.app", *args, "--without-gossip", "--without-mingle"]
    if beat:
        cmd += ["-B", "-s", str(LOG_DIR / f"beat-{name}.schedule")]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=os.environ | dict(env or {}), stdout=log,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker {name} exited with {proc.returncode}; see {log_path}")
        if app.control.ping(destination=[f"{name}@{os.uname().nodename}"], timeout=0.5):
            return WorkerProc(name, proc, log_path)
    proc.kill()
    raise RuntimeError(f"worker {name} did not answer a ping in 60 s; see {log_path}")


def stop_worker(worker: WorkerProc) -> None:
    worker.proc.terminate()
    try:
        worker.proc.wait(30)
    except subprocess.TimeoutExpired:
        worker.proc.kill()
        worker.proc.wait()


# --- the HTTP server, in its own process ------------------------------------------------------------------


class ServerProcess:
    """Serves fixed route tables from a forked child process, one ``LocalServer`` per loopback address, so
    the server does not take the GIL (or a core's share) from the measuring process.

    ``routes_for(host, port)`` builds the table of a host once its port is known (feeds need absolute URLs),
    so the child is started in two steps: bind, then receive the tables."""

    def __init__(self, hosts: Sequence[str],
                 routes_for: Callable[[str, Callable[[str, str], str]], dict[str, Route]],
                 latency: float = 0.0) -> None:
        # Ports are picked here (bind to 0 then close) so the tables can carry absolute URLs before the fork.
        self.ports = {host: free_port(host) for host in hosts}
        self.sites = {host: routes_for(host, self.url) for host in hosts}
        ctx = mp.get_context("fork")
        self._parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve_on, args=(self.sites, self.ports, child, latency), daemon=True)
        self.proc.start()
        got = self._parent.recv()
        if got != self.ports:
            raise RuntimeError(f"server bound {got}, expected {self.ports}")

    def url(self, host: str, path: str) -> str:
        return f"http://{host}:{self.ports[host]}{path}"

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._parent.send("stop")
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()


def fast_handler(latency: float = 0.0) -> type[Any]:
    """The demo server's handler with Nagle off: it writes headers and body in two sends, and with Nagle on
    the body waits for the client's delayed ACK (tens of ms per response on loopback). ``latency`` seconds
    pass before every answer, as with a remote site (each connection has its own server thread)."""
    from worker.demo import server as srvmod

    class Handler(srvmod._Handler):
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            if latency > 0:
                time.sleep(latency)
            super().do_GET()

    return Handler


def _serve_on(sites: dict[str, dict[str, Route]], ports: dict[str, int], conn: Connection,
              latency: float = 0.0) -> None:
    from worker.demo import server as srvmod

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    bound = {}
    handler = fast_handler(latency)
    for host, routes in sites.items():
        httpd = srvmod._Server((host, ports[host]), handler)
        httpd.routes = dict(routes)
        httpd.hits = {}
        httpd.request_queue_size = 128
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        bound[host] = httpd.server_address[1]
    conn.send(bound)
    with contextlib.suppress(EOFError):
        conn.recv()
    os._exit(0)


# --- feeds and pages ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    url: str
    title: str
    published: datetime | None = None
    guid: str | None = None


def rss(title: str, link: str, items: Sequence[Item]) -> bytes:
    parts = [f'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>{escape(title)}</title>'
             f"<link>{escape(link)}</link><description>{escape(title)}</description>"]
    for it in items:
        parts.append(f"<item><title>{escape(it.title)}</title><link>{escape(it.url)}</link>"
                     f"<guid isPermaLink=\"false\">{escape(it.guid or it.url)}</guid>")
        if it.published is not None:
            parts.append(f"<pubDate>{format_datetime(it.published)}</pubDate>")
        parts.append("</item>")
    parts.append("</channel></rss>")
    return "".join(parts).encode()


def rss_response(body: bytes, etag: str | None = None) -> Response:
    headers = {"ETag": etag} if etag else {}
    return Response(body, "application/rss+xml; charset=utf-8", headers=headers)


@dataclass(frozen=True)
class Page:
    group: str  # "<era>/<site>" for big9
    stem: str
    html: bytes


def big9_pages(limit: int | None = None) -> list[Page] | None:
    """The 270 real pages of ``../shared/eval/big9``, decompressed in memory (never copied), or None."""
    base = SHARED_EVAL / "big9"
    manifest = base / "manifest.json"
    if not manifest.is_file():
        return None
    pages = []
    for entry in json.loads(manifest.read_text()):
        rel = Path(entry["html"])
        pages.append(Page(f"{entry['era']}/{entry['site']}", rel.name.removesuffix(".html.gz"),
                          gzip.decompress((base / rel).read_bytes())))
    return pages[:limit] if limit else pages


def aeb_pages() -> list[Page] | None:
    """The 181 real pages of ``../shared/eval/aeb`` (126 sites), decompressed in memory, or None."""
    base = SHARED_EVAL / "aeb" / "html"
    if not base.is_dir():
        return None
    return [Page("aeb", path.name.removesuffix(".html.gz"), gzip.decompress(path.read_bytes()))
            for path in sorted(base.glob("*.html.gz"))]


def published_dates(n: int, start: datetime | None = None) -> list[datetime]:
    start = start or datetime.now(UTC) - timedelta(hours=1)
    return [start - timedelta(minutes=7 * i) for i in range(n)]


# --- runs ---------------------------------------------------------------------------------------------------


def new_run(r: redis.Redis, feed_ids: list[str]) -> str:
    from worker.core import runs

    run_id = uuid.uuid4().hex[:12]
    runs.start(r, run_id, feed_ids)
    return run_id


def wait_run(r: redis.Redis, run_id: str, timeout: float, step: float = 0.05) -> dict[str, int]:
    from worker.core import runs

    deadline = time.monotonic() + timeout
    while runs.pending(r, run_id) > 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} not finished after {timeout} s: {runs.totals(r, run_id)}")
        time.sleep(step)
    return runs.totals(r, run_id)


def last_entry_ms(r: redis.Redis, streams: Sequence[str]) -> int | None:
    """Server time (ms) of the newest entry of ``streams``: when the last article was published."""
    newest = None
    for stream in streams:
        got = r.xrevrange(stream, count=1)
        if got:
            ms = int(got[0][0].split(b"-")[0])
            newest = ms if newest is None else max(newest, ms)
    return newest


def entry_span_ms(r: redis.Redis, streams: Sequence[str]) -> tuple[int | None, int | None]:
    """Server times (ms) of the oldest and newest entries of ``streams``: the first and last article."""
    first = last = None
    for stream in streams:
        head, tail = r.xrange(stream, count=1), r.xrevrange(stream, count=1)
        if head:
            ms = int(head[0][0].split(b"-")[0])
            first = ms if first is None else min(first, ms)
        if tail:
            ms = int(tail[0][0].split(b"-")[0])
            last = ms if last is None else max(last, ms)
    return first, last


def redis_time_ms(r: redis.Redis) -> float:
    sec, usec = r.time()
    return float(sec * 1000 + usec / 1000)


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0-100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return float(ordered[rank - 1])


def cpu_seconds(roles: Mapping[str, int]) -> dict[str, float]:
    """CPU time (user + system) so far of each role's process and its descendants; this process (the
    benchmark, the parent of everything) counts alone."""
    import psutil

    out: dict[str, float] = {}
    for role, pid in roles.items():
        try:
            proc = psutil.Process(pid)
            procs = [proc] if pid == os.getpid() else [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        out[role] = total
    return out


def jdump(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
