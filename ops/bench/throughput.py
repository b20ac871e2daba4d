"""Pipeline throughput against the CPU limit of extraction, with the server answering after N ms.

    .venv/bin/python ops/bench/throughput.py [--latency-ms 0,100,300,1000] [--hosts 36] [--per-host 10]
                                             [--processes 2] [--host-rate 0] [--repeat 1]
                                             [--py-spy extract|download] [--profile]

Pages: ``../shared/eval/big9``'s site+period groups and ``../shared/eval/aeb``'s pages in groups of ten (read in
place, never copied into the project) when present, else generated demo sites (``worker.demo.site``). One loopback
address per host (127.0.0.2, ...), one RSS feed per host, served from a separate process that answers every
request (feed, robots.txt, page) after ``--latency-ms`` ms.

Measures, in one run:
  (a) a bare ``trafilatura.extract(html)`` loop over the decoded pages in this process (the CPU limit), and for
      reference the pipeline's own ``extract_page`` with and without htmldate, and text extraction alone;
  (b) for each latency, the pipeline as production runs it on an empty Redis: a download worker (threads,
      ``INGEST_DOWNLOAD_CONCURRENCY``) and an extract worker of ``--processes`` processes, default settings apart
      from the host rate: pages/s from the first article to the last (Redis times of the stream entries) and its
      ratio to the bare loop run in a fresh process just before and just after it (the VM's speed drifts; with
      ``--repeat N``, N runs so interleaved and their median ratio), CPU ms per page of every process, Redis
      commands per page, pages put off for a busy host, the worker set's peak RSS and the Redis bytes of a page
      in flight between the stages.
``--py-spy`` samples one stage's worker; ``--profile`` runs the steps in this process with a per-step breakdown.

Last line: ``throughput pages= hosts= bare= cpu_ms_bare= l<N>ms_c<P>= ratio_l<N>ms_c<P>= rss_mb_l<N>ms_c<P>= ...``.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib
from benchlib import Item, Page, ServerProcess

from worker.demo.server import Response, Route
from worker.net.fetch import FetchResult, decode_html

STREAMS = ("articles", "articles.duplicates")


def demo_pages(n: int) -> list[Page]:
    """Generated pages (``worker.demo.site``) of nine sites, when big9 is not there."""
    from worker.demo.site import build_many

    sites = build_many("http://demo.invalid", 9, max(1, n // 9), seed=1)
    return [Page(f"demo/site{i}", art.slug, site.routes[site.article_path(art.slug)].body)
            for i, site in enumerate(sites) for art in site.articles][:n]


def decoded(page: Page) -> str:
    return decode_html(FetchResult(url="http://x/", status=200, body=page.html, content_type="text/html",
                                   charset=None, etag=None, last_modified=None, retry_after=None))


# --- (a) the CPU limit --------------------------------------------------------------------------------------


def loop_rate(fn: Callable[[str], Any], htmls: list[str], rounds: int) -> tuple[float, float]:
    """Pages/s of ``fn`` over ``htmls``: best of ``rounds`` passes (the machine is shared and noisy), after a
    warm-up on a few pages (lazy imports, compiled patterns). Keep ``rounds`` at 1 for a figure comparable
    with the pipeline: htmldate/dateparser cache per string, so a second pass over the same pages is faster
    than anything a worker sees."""
    for html in htmls[:: max(1, len(htmls) // 5)][:5]:
        fn(html)
    best = best_cpu = float("inf")
    for _ in range(rounds):
        started, cpu = time.perf_counter(), time.process_time()
        for html in htmls:
            fn(html)
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return len(htmls) / best, best_cpu * 1000 / len(htmls)


def _bare_once(htmls: list[str]) -> tuple[float, float]:
    import trafilatura

    return loop_rate(trafilatura.extract, htmls, 1)


def bare_fresh(htmls: list[str]) -> tuple[float, float]:
    """The bare loop's pages/s and CPU ms a page, one pass in a new interpreter (no cache warmed by an earlier
    pass). Taken right before and right after each pipeline run: this VM's speed drifts by ±15 % over a minute
    (the same pure-Python loop takes 0.61 to 0.83 s), so a ratio is only fair against the loop of that minute."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        rate: tuple[float, float] = pool.apply(_bare_once, (htmls,))
    return rate


def bare_rates(htmls: list[str], rounds: int) -> dict[str, tuple[float, float]]:
    import trafilatura

    # before worker.extract.page is imported: it tunes trafilatura's parser, and the limit is trafilatura as shipped
    assert "worker.extract.page" not in sys.modules
    rates = {"bare": loop_rate(trafilatura.extract, htmls, rounds)}

    from worker.extract.page import EXTRACT_OPTIONS, extract_page

    rates |= {
        "extract_page": loop_rate(lambda h: extract_page(h, "http://127.0.0.2/a"), htmls, rounds),
        # what a fetch task runs when the feed entry has a date (the usual case): no htmldate
        "extract_page_feed_dated": loop_rate(lambda h: extract_page(h, "http://127.0.0.2/a", date_search=False),
                                             htmls, rounds),
        "no_metadata": loop_rate(
            lambda h: trafilatura.bare_extraction(h, url="http://127.0.0.2/a", **EXTRACT_OPTIONS), htmls, rounds),
    }
    return rates


# --- serving ------------------------------------------------------------------------------------------------


def bench_pages(hosts: int, per_host: int, limit: int | None) -> tuple[dict[str, list[Page]], str]:
    """``hosts`` groups of ``per_host`` real pages: big9's site+period groups first (pages of one template),
    then aeb's pages (one or two per site) in groups of their own; generated pages when ../shared is absent."""
    big9, aeb = benchlib.big9_pages(), benchlib.aeb_pages()
    groups: dict[str, list[Page]] = collections.defaultdict(list)
    if big9 is None:
        source = "demo"
        for page in demo_pages(hosts * per_host):
            groups[page.group.replace("/", "-")].append(page)
    else:
        source = "big9+aeb" if aeb else "big9"
        for page in big9:
            groups[page.group.replace("/", "-")].append(page)
        for i, page in enumerate(aeb or []):
            groups[f"aeb-{i // per_host}"].append(page)
    full = [g for g in groups if len(groups[g]) >= per_host] + [g for g in groups if len(groups[g]) < per_host]
    by_group = {g: groups[g][:per_host] for g in full[:hosts]}
    if limit:
        by_group = {g: ps[: max(1, limit // len(by_group))] for g, ps in by_group.items()}
    return by_group, source


def serve(by_group: dict[str, list[Page]], latency: float) -> tuple[ServerProcess, dict[str, list[Page]]]:
    """One loopback address (127.0.0.x) per group: a host of its own for the politeness limits, answering
    every request (feed, robots.txt, pages) after ``latency`` seconds."""
    hosts = {f"127.0.0.{i + 2}": name for i, name in enumerate(by_group)}
    by_host = {host: by_group[name] for host, name in hosts.items()}

    def routes_for(host: str, url: Callable[[str, str], str]) -> dict[str, Route]:
        site_pages = by_host[host]
        dates = benchlib.published_dates(len(site_pages))
        routes: dict[str, Route] = {}
        items = []
        for page, when in zip(site_pages, dates, strict=True):
            path = f"/{page.group}/{page.stem}.html"
            routes[path] = Response(page.html, "text/html")  # no charset: the worker detects, as for real pages
            items.append(Item(url(host, path), f"{hosts[host]} {page.stem}", when))
        routes["/feed.xml"] = benchlib.rss_response(benchlib.rss(hosts[host], url(host, "/"), items))
        return routes

    return ServerProcess(list(hosts), routes_for, latency), by_host


# --- (b), (c) the pipeline ----------------------------------------------------------------------------------


@contextmanager
def py_spy(pid: int, out: Path, *, idle: bool = True) -> Iterator[None]:
    """Sample ``pid`` and its children into a collapsed-stack file while the block runs (``idle``: waiting
    threads too; off for the download worker, whose hundreds of idle threads would drown the rest)."""
    exe = Path(sys.executable).parent / "py-spy"
    proc = subprocess.Popen([str(exe), "record", "--pid", str(pid), "--subprocesses", "--format", "raw",
                             "--rate", "200", *(["--idle"] if idle else []), "--nonblocking", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if proc.returncode not in (0, -signal.SIGINT) and not out.exists():
            print(f"py-spy failed ({proc.returncode}): {err.decode(errors='replace')[-500:]}")


@dataclass
class RunFigures:
    pages_per_s: float  # first to last article
    seconds: float  # first poll sent to last article
    totals: dict[str, int]
    cpu_ms: float  # per page: both workers, Redis and the HTTP server
    rss_mb: float  # peak resident memory of the worker set (both stages, their pool children)
    handoff_bytes: float  # mean Redis bytes of one page waiting between the stages (hash + message)
    in_flight_peak: int  # most pages waiting between the stages at one sample


def run_pipeline(server: ServerProcess, by_host: dict[str, list[Page]], processes: int, hold: float,
                 timeout: float, redis_pid: int, env: dict[str, str], spy: Path | None = None,
                 spy_stage: str = "extract") -> RunFigures:
    """One cold run on an empty database with both stages as production runs them: a download worker (thread
    pool, the default size) and an extract worker of ``processes`` processes."""
    from worker.core import runs
    from worker.feeds.feedlist import Feed
    from worker.poll.schedule import Schedule
    from worker.tasks import poll_feed

    r = benchlib.client()
    r.flushdb()
    env = env | {"INGEST_CLEAN_HOLD_SECONDS": str(hold)}
    downloads = benchlib.start_worker(f"bench-dl{processes}", stage="download", env=env)
    extracts = benchlib.start_worker(f"bench-ex{processes}", stage="extract", concurrency=processes, env=env)
    workers = [downloads, extracts]
    try:
        feeds = [Feed(url=server.url(host, "/feed.xml"), name=host) for host in by_host]
        Schedule(r).sync(feeds)
        n_pages = sum(len(p) for p in by_host.values())
        run_id = benchlib.new_run(r, [f.id for f in feeds])
        r.config_resetstat()
        roles = {"download worker": downloads.proc.pid, "extract worker": extracts.proc.pid,
                 "http server": server.proc.pid or 0, "redis": redis_pid, "bench": os.getpid()}
        sampler = Sampler(r, [w.proc.pid for w in workers])
        spied = extracts if spy_stage == "extract" else downloads
        with py_spy(spied.proc.pid, spy, idle=spy_stage == "extract") if spy else _nothing():
            cpu0 = benchlib.cpu_seconds(roles)
            t0 = benchlib.redis_time_ms(r)
            for feed in feeds:
                poll_feed.apply_async((feed.id, run_id), queue="poll")
            with sampler:
                totals = benchlib.wait_run(r, run_id, timeout)
            first, last = benchlib.entry_span_ms(r, STREAMS)
            cpu1 = benchlib.cpu_seconds(roles)
        stats = r.info("commandstats")
        put_off = {k: v for k, v in runs.totals(r).items() if k.startswith("put_off:")}
        print(f"  pages and polls put off for a busy host: {put_off or 0} for {n_pages} pages")
    finally:
        for worker in workers:
            benchlib.stop_worker(worker)
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    usec = sum(int(v["usec"]) for v in stats.values())
    top = sorted(calls.items(), key=lambda kv: -kv[1])[:12]
    print(f"  redis (-c {processes}): {sum(calls.values()) / n_pages:.1f} commands per page "
          f"(incl. the consumers' polling), server CPU {usec / 1000 / n_pages:.2f} ms per page; "
          + " ".join(f"{k}={v / n_pages:.1f}" for k, v in top))
    cpu = {k: (cpu1[k] - cpu0[k]) * 1000 / n_pages for k in cpu1 if k in cpu0}
    seconds = ((last or t0) - t0) / 1000
    print(f"  CPU ms per page (-c {processes}): total={sum(cpu.values()):.1f} "
          + " ".join(f"{k.replace(' ', '_')}={v:.1f}" for k, v in cpu.items())
          + f"; wall ms per page {seconds * 1000 / n_pages:.1f} on {os.cpu_count()} cores")
    published = sum(v for k, v in totals.items() if k.startswith(("published:", "duplicates:")))
    steady = (published - 1) / ((last - first) / 1000) if first and last and last > first else float("nan")
    return RunFigures(steady, seconds, totals, sum(v for k, v in cpu.items() if k != "bench"), sampler.rss_mb,
                      sampler.handoff_bytes, sampler.in_flight_peak)


class Sampler:
    """Every half second while a run goes: resident memory of the worker set, and the pages waiting between the
    stages (their hashes in Redis, sized with MEMORY USAGE, and the extract queue's messages)."""

    def __init__(self, r: Any, pids: list[int]) -> None:
        self.r, self.pids = r, pids
        self.rss_mb = 0.0
        self.sizes: list[int] = []
        self.in_flight_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def handoff_bytes(self) -> float:
        return sum(self.sizes) / len(self.sizes) if self.sizes else float("nan")

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.5):
            rss = 0
            for pid in self.pids:
                try:
                    proc = psutil.Process(pid)
                    rss += sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
                except psutil.NoSuchProcess:
                    continue
            self.rss_mb = max(self.rss_mb, rss / 2**20)
            keys = list(self.r.scan_iter(match="ingest:page:*", count=1000))
            self.in_flight_peak = max(self.in_flight_peak, len(keys))
            message = self.r.lindex("extract", -1)
            for k in keys[:20]:
                used = self.r.memory_usage(k)
                if used:
                    self.sizes.append(int(used) + len(message or b""))


@contextmanager
def _nothing() -> Iterator[None]:
    yield


COMPONENTS = [
    ("trafilatura (all, incl. metadata)", ("trafilatura/",)),
    ("  htmldate (date search)", ("htmldate/",)),
    ("  trafilatura metadata (incl. dates)", ("extract_metadata (trafilatura/metadata.py",)),
    ("worker.clean.memory + clean", ("worker/clean/memory.py", "worker/clean/rules.py")),
    ("worker.dedup", ("worker/dedup/",)),
    ("worker.publish.writer", ("worker/publish/writer.py",)),
    ("worker.net.fetch (httpx)", ("worker/net/fetch.py",)),
    ("worker.poll.parse (feedparser)", ("worker/poll/parse.py",)),
    ("worker.core.runs counters", ("worker/core/runs.py",)),
    ("redis-py (all, incl. waits)", ("redis/",)),
    ("apply_async (hand-on + events)", ("apply_async (celery/app/task.py",)),
    ("celery events (task-sent/started/..)", ("celery/events/", "EventDispatcher")),
    ("kombu", ("kombu/",)),
    ("structlog/logging", ("structlog/", "logging/")),
    ("json", ("json/",)),
    ("prometheus", ("prometheus_client/",)),
]


# Idle samples, told apart by their leaf frame.
WAITS = [
    ("waiting: Redis reply", ("SocketBuffer._read_from_socket", "_parsers/")),
    ("waiting: HTTP read/connect", ("httpcore/_backends/sync.py",)),
    ("waiting: consumer event loop (poll)", ("poll (kombu/utils/eventio.py", "_poll (kombu")),
]
ORDER = [name for name, _ in WAITS] + [name for name, _ in COMPONENTS]


def summarise_spy(path: Path, top: int = 20) -> None:
    """Where the sampled worker spent its time (py-spy ``--idle``): for the pool child, shares of the time spent
    inside tasks (Celery's ``trace_task``) by component (inclusive; a sample can count in several), and the
    top frames; the time outside tasks (waiting for the next one, py-spy's 1 s attach included) is given
    apart. For the main process (the consumer), shares of all its samples."""
    if not path.exists():
        print("py-spy: no samples (ptrace not permitted?)")
        return
    per_proc: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    totals: collections.Counter[str] = collections.Counter()
    outside = 0
    self_frames: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        try:
            count = int(count_s)
        except ValueError:
            continue
        frames = stack.split(";")
        procs = [f for f in frames if f.startswith("process ")]
        proc = "child (runs tasks)" if len(procs) > 1 else "main (consumer)"
        frames = [f for f in frames if not f.startswith("process ")]
        if proc.startswith("child") and not any("trace_task (celery/app/trace.py" in f for f in frames):
            outside += count
            continue
        totals[proc] += count
        seen: set[str] = set()
        for name, needles in COMPONENTS:
            if name not in seen and any(n in f for f in frames for n in needles):
                per_proc[proc][name] += count
                seen.add(name)
        if frames:
            leaf = frames[-1]
            for name, needles in WAITS:
                if any(n in leaf for n in needles):
                    per_proc[proc][name] += count
                    break
            if proc.startswith("child"):
                self_frames[leaf] += count
    rate = 200
    for proc in sorted(totals):
        n = totals[proc]
        what = "inside tasks" if proc.startswith("child") else "wall, idle included"
        print(f"py-spy {proc}: {n / rate:.1f} s of samples ({what})")
        for name, k in sorted(per_proc[proc].items(), key=lambda kv: ORDER.index(kv[0])):
            print(f"    {name:40s} {k / n:6.1%}")
    print(f"  child outside tasks: {outside / rate:.1f} s (waiting for the next task; py-spy's 1 s attach included)")
    n = totals["child (runs tasks)"] or 1
    print("  child, top leaf frames inside tasks:")
    for frame, k in self_frames.most_common(top):
        print(f"    {k / n:6.1%}  {frame[:120]}")


# --- in-process breakdown -----------------------------------------------------------------------------------


def profile_in_process(server: ServerProcess, by_host: dict[str, list[Page]], report: Path | None) -> None:
    """The pipeline's functions called directly (no Celery, no hold) over the same pages; time per step, and a
    pyinstrument report when ``report`` is given (without it, pages/s is what the steps cost without Celery)."""
    import logging

    import structlog
    from pyinstrument import Profiler

    from worker import context as context_module
    from worker.context import Context
    from worker.core.settings import get_settings
    from worker.download import handoff
    from worker.download.step import download
    from worker.extract import step as extract_step
    from worker.feeds.feedlist import Feed
    from worker.poll import step as poll_step
    from worker.poll.step import commit_poll, poll
    from worker.publish.step import publish

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    r = benchlib.client()
    r.flushdb()
    ctx = Context(r, get_settings())
    spent: dict[str, float] = collections.defaultdict(float)

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started
        return wrapper

    patched = [(context_module, "fetch"), (extract_step, "decode_body"), (extract_step, "extract_page"),
               (poll_step, "parse_feed")]
    saved = [(module, name, getattr(module, name)) for module, name in patched]
    for module, name, fn in saved:
        setattr(module, name, timed(name, fn))
    for obj, attr, name in ((ctx.sites, "observe", "sites.observe"), (ctx.sites, "clean", "sites.clean"),
                            (ctx.stories, "check_and_remember", "stories.check"),
                            (ctx.publisher, "publish", "publisher.publish")):
        setattr(obj, attr, timed(name, getattr(obj, attr)))
    profiler = Profiler(interval=0.001) if report is not None else None
    n = 0
    started = time.perf_counter()
    try:
        if profiler is not None:
            profiler.start()
        for host in by_host:
            feed = Feed(url=server.url(host, "/feed.xml"), name=host)
            t = time.perf_counter()
            result = poll(ctx, feed)
            commit_poll(ctx, result)
            spent["poll (all)"] += time.perf_counter() - t
            for job in result.jobs:
                t = time.perf_counter()
                page = download(ctx, job, owner="bench")
                spent["download (all)"] += time.perf_counter() - t
                stored = handoff.load(ctx.r, job.article_id) if page is not None else None
                t = time.perf_counter()
                prepared = extract_step.extract(ctx, page, stored) if page and stored else None
                spent["extract (all)"] += time.perf_counter() - t
                if prepared is not None:
                    t = time.perf_counter()
                    publish(ctx, prepared)
                    spent["publish (all)"] += time.perf_counter() - t
                n += 1
        if profiler is not None:
            profiler.stop()
    finally:
        for module, name, fn in saved:
            setattr(module, name, fn)
    elapsed = time.perf_counter() - started
    print(f"in-process pipeline (no Celery, no hold, pyinstrument {'on' if profiler else 'off'}): {n} pages in "
          f"{elapsed:.1f} s = {n / elapsed:.1f} pages/s; ms per page by step:")
    for name, secs in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"    {name:28s} {secs / max(n, 1) * 1000:8.2f}")
    if profiler is not None and report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(profiler.output_text(unicode=True, color=False, show_all=False))
        print(f"  pyinstrument report: {report}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency-ms", default="0",
                    help="server delay before every answer, ms; several comma-separated values run one after "
                         "the other (default 0)")
    ap.add_argument("--hosts", type=int, default=36, help="hosts serving the pages (default 36)")
    ap.add_argument("--per-host", type=int, default=10, help="pages per host (default 10)")
    ap.add_argument("--pages", type=int, default=None, help="use at most N pages in all")
    ap.add_argument("--processes", default="2",
                    help="extract processes; comma-separated for several runs (default 2: the cores)")
    ap.add_argument("--host-rate", type=float, default=0.0,
                    help="INGEST_HOST_RATE of the run (default 0: off, the issue's set-up; 1 is production's)")
    ap.add_argument("--hold", type=float, default=0.0,
                    help="INGEST_CLEAN_HOLD_SECONDS of the workers (0: steady state; 20: production cold start)")
    ap.add_argument("--rounds", type=int, default=1, help="passes of the bare loop (best is kept)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="pipeline runs per latency, each between two fresh bare loops; the median ratio is kept")
    ap.add_argument("--py-spy", choices=("extract", "download"), default=None,
                    help="sample that stage's worker with py-spy")
    ap.add_argument("--profile", action="store_true", help="in-process per-step breakdown + pyinstrument")
    ap.add_argument("--timeout", type=float, default=900.0)
    args = ap.parse_args(argv)

    print(benchlib.machine())
    by_group, source = bench_pages(args.hosts, args.per_host, args.pages)
    pages = [p for group in by_group.values() for p in group]
    htmls = [decoded(p) for p in pages]
    print(f"pages: {len(pages)} from {source} on {len(by_group)} hosts, "
          f"{sum(len(h) for h in htmls) / len(htmls) / 1024:.0f} KiB of HTML on average")

    rates = bare_rates(htmls, args.rounds)
    print(f"(a) extraction loop in one process (best of {args.rounds}), pages/s wall [CPU ms/page]: "
          + "  ".join(f"{k}={v:.1f} [{c:.1f}]" for k, (v, c) in rates.items()))
    bare, bare_cpu = rates["bare"]

    # production defaults (host concurrency 2, robots.txt obeyed, 200 download threads, one extract process per
    # core) apart from the host rate; the local server is allowed through the SSRF guard
    env = {"INGEST_HOST_CONCURRENCY": "2", "INGEST_HOST_RATE": f"{args.host_rate:g}", "INGEST_ROBOTS_OBEY": "true"}
    redis_server = benchlib.start_redis(env)
    results = []
    after: float | None = None  # the last bare loop, the next run's "before"
    try:
        for latency_ms in [float(x) for x in args.latency_ms.split(",")]:
            server, by_host = serve(by_group, latency_ms / 1000)
            try:
                if args.profile:
                    profile_in_process(server, by_host, None)
                    profile_in_process(server, by_host, benchlib.LOG_DIR / "throughput-pyinstrument.txt")
                for processes in [int(x) for x in args.processes.split(",")]:
                    ratios = []
                    for _ in range(args.repeat):
                        spy = benchlib.LOG_DIR / "throughput-py-spy.txt" if args.py_spy else None
                        if spy is not None:
                            spy.unlink(missing_ok=True)
                        before = after if after is not None else bare_fresh(htmls)[0]
                        fig = run_pipeline(server, by_host, processes, args.hold, args.timeout,
                                           redis_server.proc.pid, env, spy, args.py_spy or "extract")
                        after = bare_fresh(htmls)[0]
                        ratios.append(fig.pages_per_s / ((before + after) / 2))
                        print(f"(b) latency {latency_ms:g} ms, {processes} extract processes: {len(pages)} pages, "
                              f"{fig.pages_per_s:.1f} pages/s first to last article = {ratios[-1]:.2f}x the bare "
                              f"loop run just before and after ({before:.1f} and {after:.1f} pages/s); "
                              f"{fig.seconds:.1f} s from the first poll; CPU {fig.cpu_ms:.1f} ms a page; "
                              f"worker set RSS peak {fig.rss_mb:.0f} MiB; Redis per page in flight "
                              f"{fig.handoff_bytes / 1024:.1f} KiB (peak {fig.in_flight_peak} pages); "
                              f"run totals {benchlib.jdump(fig.totals)}")
                        if spy is not None:
                            summarise_spy(spy)
                    ratio = statistics.median(ratios)
                    if args.repeat > 1:
                        print(f"(b) latency {latency_ms:g} ms, {processes} extract processes: median ratio "
                              f"{ratio:.2f} of {args.repeat} runs ({', '.join(f'{x:.2f}' for x in ratios)})")
                    results.append((latency_ms, processes, fig, ratio))
            finally:
                server.stop()
    finally:
        redis_server.stop()
    os.environ.pop("REDIS_URL", None)
    print(benchlib.machine())
    print(f"throughput pages={len(pages)} hosts={len(by_group)} bare={bare:.1f} cpu_ms_bare={bare_cpu:.1f} "
          + " ".join(f"l{lat:g}ms_c{proc}={fig.pages_per_s:.1f} ratio_l{lat:g}ms_c{proc}={ratio:.2f} "
                     f"rss_mb_l{lat:g}ms_c{proc}={fig.rss_mb:.0f}"
                     for lat, proc, fig, ratio in results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
