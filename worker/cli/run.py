"""``ingest worker``, ``ingest beat`` and ``ingest run``: Celery processes for a fleet or one machine, and the
one-shot run (poll every feed once, process everything, print a summary). The run's bookkeeping (what is
outstanding, each feed's outcome, the summary) is ``worker.core.runs``; this module starts the processes and
shows the progress."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from worker.cli.common import (
    FeedsOpt,
    celery_argv,
    checked_redis_url,
    connect,
    connect_broker,
    interactive,
    use_feeds,
)
from worker.cli.errors import USAGE, CliError
from worker.core.settings import LOCAL_UNLIMITED_ENV, get_settings
from worker.core.urls import redact_url


def worker(
    stage: Annotated[str, typer.Option(help="download (polls, pages: threads), extract (CPU: processes), or all "
                                            "(both, as child processes)")] = "all",
    queues: Annotated[str | None, typer.Option(help="comma-separated queues (default: the stage's)")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", help="threads or processes "
                                                    "(default: the stage's, from the settings)")] = None,
    loglevel: str = "INFO",
    beat: Annotated[bool, typer.Option(help="also run beat in this worker (one machine)")] = False,
    pool: Annotated[str | None, typer.Option(help="prefork or threads (default: the stage's)")] = None,
) -> None:
    """Run a stage's Celery worker (`celery -A worker.app worker` with the stage's queues and pool)."""
    from worker.app import stages
    from worker.cli import supervise  # imports worker.app, which needs valid settings

    checked_redis_url()  # and start the embedded Redis here, before Celery forks, if REDIS_URL is unset
    if beat:
        connect()  # the embedded beat (RedBeat) cannot start without Redis: one line instead of its traceback
        connect_broker()
    if stage == "all" and queues is None and pool is None:
        procs = supervise.start_stages(loglevel=loglevel, beat=beat, new_session=True,
                                       concurrency={"extract": concurrency} if concurrency else None)
        raise typer.Exit(supervise.supervise(procs))
    if stage == "all":  # queues or a pool of one's own: one worker, built like the extract stage's
        stage = "extract"
    defined = stages()
    if stage not in defined:
        raise CliError(f"unknown stage {stage!r}: use download, extract or all", USAGE)
    args = defined[stage].celery_args(loglevel=loglevel, concurrency=concurrency, beat=beat)
    if queues is not None:
        args[args.index("-Q") + 1] = queues
    if pool is not None:
        args[args.index("-P") + 1] = pool
    exec_celery(args)


def beat(loglevel: str = "INFO") -> None:
    """Run Celery beat with the Redis-locked scheduler (several may run; one dispatches)."""
    connect()  # RedBeat needs Redis to start at all: say so in one line rather than with its traceback
    connect_broker()  # and its lock lives on the broker
    exec_celery(["beat", "-l", loglevel])


def exec_celery(args: list[str]) -> None:
    """Become Celery (exec), so SIGTERM from a container runtime reaches it and its warm shutdown runs. Only
    with the embedded Redis must this process stay, as the server's owner; it then forwards SIGTERM/SIGINT."""
    from worker.cli import supervise  # imports worker.app, which needs valid settings
    from worker.core.redisconn import embedded_running

    if not embedded_running():
        sys.stdout.flush()
        os.execv(sys.executable, celery_argv(*args))
    # Celery in its own session gets a terminal's Ctrl-C once, from here (twice would mean a cold shutdown)
    proc = subprocess.Popen(celery_argv(*args), start_new_session=True)
    raise typer.Exit(supervise.supervise([proc]))


def run(
    once: Annotated[bool, typer.Option("--once", help="poll every feed once, process everything, exit")] = False,
    feeds: FeedsOpt = None,
    demo: Annotated[bool, typer.Option("--demo", help="serve the bundled sample site and ingest it")] = False,
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c")] = None,
    timeout: Annotated[float, typer.Option(help="--once: give up after this many seconds")] = 600.0,
    as_json: Annotated[bool, typer.Option("--json", help="--once: no live progress, the summary as JSON")] = False,
) -> None:
    """Both stages' workers and beat on one machine; with REDIS_URL unset an embedded Redis is started."""
    from worker.cli import supervise  # imports worker.app, which needs valid settings

    checked_redis_url()
    if demo:
        _run_demo(concurrency, timeout, as_json)
        return
    path = use_feeds(feeds)
    if once:
        summary = run_once(path, concurrency=concurrency, timeout=timeout, live=interactive(as_json))
        print_summary(summary, as_json)
        raise typer.Exit(0 if summary["finished"] else 1)
    connect()  # beat (RedBeat) cannot start without Redis: one line instead of its traceback
    connect_broker()
    procs = supervise.start_stages(beat=True, new_session=True,
                                   concurrency={"extract": concurrency} if concurrency else None)
    raise typer.Exit(supervise.supervise(procs))


def run_once(path: Path, *, concurrency: int | None = None, timeout: float = 600.0,
             extra_env: dict[str, str] | None = None, live: bool = False) -> dict[str, Any]:
    """Poll every valid feed of ``path`` once through real workers and wait until every feed was polled (or
    failed with a reason) and every task it fanned out is done. Bad entries of the list are reported on stderr
    and skipped. ``live``: draw the progress on the terminal."""
    from worker.cli import supervise  # imports worker.app, which needs valid settings
    from worker.cli.progress import run_display
    from worker.core import runs
    from worker.feeds.feedlist import read_feed_list
    from worker.poll.schedule import config_key
    from worker.tasks import poll_feed, send_all

    r = connect()
    connect_broker()  # the workers would wait for an unreachable broker for ever: say so now, in one line
    checked = read_feed_list(path)
    for problem in checked.problems:
        typer.echo(f"warning: skipped {problem}", err=True)
    # A feed marked `enabled: false` is off for one-shot runs too; the summary names each one (not polled).
    feed_list = [f for f in checked.feeds if f.enabled]
    disabled = [redact_url(f.url) for f in checked.feeds if not f.enabled]
    pipe = r.pipeline(transaction=False)
    for feed in feed_list:  # make the feeds known to workers without touching the live schedule
        pipe.hset(config_key(), feed.id, feed.model_dump_json())
    pipe.execute()
    run_id = uuid.uuid4().hex[:12]
    runs.start(r, run_id, [f.id for f in feed_list])
    # the worker says only what goes wrong (its info lines would bury the summary), unless asked for more
    env = {"INGEST_LOG_LEVEL": "WARNING"} | os.environ | {"INGEST_METRICS_PORT": "0"} | (extra_env or {})
    if live and get_settings().log_format == "auto":
        env["INGEST_LOG_FORMAT"] = "console"  # the worker's log lines are shown above the progress bars
    # Both stages, each in its own session (Ctrl-C is ours to pass on); stdout carries only the summary, for
    # scripts: the workers' lines go to stderr, or above the progress bars when they are drawn.
    procs = supervise.start_stages(
        node=f"once-{run_id}@%h", loglevel="WARNING", env=env, new_session=True,
        concurrency={"extract": concurrency} if concurrency else None,
        stdout=subprocess.PIPE if live else sys.stderr, stderr=subprocess.STDOUT if live else None, text=live)
    started = time.monotonic()
    forward: list[Callable[[str], None]] = [lambda line: typer.echo(line, err=True)]
    readers = [threading.Thread(target=_forward_lines, args=(proc, forward), daemon=True) for proc in procs] \
        if live else []
    try:
        for reader in readers:
            reader.start()
        send_all(poll_feed, [(feed.id, run_id) for feed in feed_list], "poll")
        with run_display(live) as display:
            forward.insert(0, display.print)
            last = runs.wait(r, run_id, timeout=timeout, alive=lambda: all(p.poll() is None for p in procs),
                             show=display.show)
            exited = next((p.poll() for p in procs if p.poll() is not None), None)  # a stage died on its own
            forward.pop(0)
    finally:
        runs.close(r, run_id)  # a poll of this run put off from now on is not sent again
        supervise.stop(procs)  # warm shutdown: in-flight tasks finish or return to the queue
        for reader in readers:
            reader.join(5)
    seconds = time.monotonic() - started
    refs = [runs.FeedRef(f.id, redact_url(f.url), f.name) for f in feed_list]  # a feed URL may carry a password
    summary = runs.summary(r, run_id, refs, seconds) | {"invalid_entries": [str(p) for p in checked.problems],
                                                        "disabled_feeds": disabled}
    if not last.finished:
        why = (f"one of its workers exited with code {exited}" if exited is not None
               else f"the {timeout:g} s --timeout passed")
        typer.echo(f"error: run not finished, {why}: {summary['pending']['feeds']} feeds and "
                   f"{summary['pending']['pages']} pages still pending (see the summary)", err=True)
    return summary


def _forward_lines(proc: subprocess.Popen[str], sinks: list[Callable[[str], None]]) -> None:
    """The worker's output, line by line, to the first sink (the progress display while it is up)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        sinks[0](line.rstrip("\n"))


def print_summary(summary: dict[str, Any], as_json: bool) -> None:
    """JSON for scripts (piped, or ``--json``); for a person at a terminal, a few lines: the totals, then only
    the feeds that need a look."""
    if as_json or not sys.stdout.isatty():
        typer.echo(json.dumps(summary, indent=2))
        return
    outcomes: dict[str, int] = {}
    for row in summary["feed_outcomes"]:
        outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + 1
    counts = summary["counts"]

    def total(prefix: str) -> int:
        return sum(v for k, v in counts.items() if k.startswith(prefix))

    state = "finished" if summary["finished"] else "NOT finished"
    n = summary["feeds"]
    typer.echo(f"run {summary['run']}: {n} feed{'' if n == 1 else 's'}, {state} in {summary['seconds']:.1f} s")
    typer.echo("feeds: " + ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items())))
    typer.echo(f"pages: {total('published:')} published, {total('duplicates:')} duplicate, "
               f"{total('dead_letters:')} dead-lettered, {summary['pending']['pages']} pending")
    for row in summary["feed_outcomes"]:
        if row["outcome"] in ("error", "pending", "deferred"):
            typer.echo(f"  {row['outcome']:8} {row['url']}  {row.get('error') or ''}".rstrip())
    for problem in summary.get("invalid_entries", []):
        typer.echo(f"  skipped  {problem}")
    for url in summary.get("disabled_feeds", []):
        typer.echo(f"  disabled {url}  (enabled: false, not polled)")


def _run_demo(concurrency: int | None, timeout: float, as_json: bool) -> None:
    from worker.demo.serve import serve_demo
    from worker.feeds.feedlist import Feed, save_feeds

    os.environ["INGEST_ALLOW_PRIVATE_NETWORKS"] = "true"  # the demo site is served on localhost
    # one local host serves the whole demo site: per-host politeness would only make the demo crawl
    for name, value in LOCAL_UNLIMITED_ENV.items():
        os.environ.setdefault(name, value)
    get_settings.cache_clear()
    server, site = serve_demo()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "feeds.yaml"
            save_feeds(path, [Feed(url=server.url(site.feed_path), name="demo", tags=("demo",))])
            summary = run_once(path, concurrency=concurrency, timeout=timeout, live=interactive(as_json))
        r = connect()
        stream = get_settings().default_stream
        for _, fields in r.xrange(stream):
            article = json.loads(fields[b"data"])
            typer.echo(f"\n=== {article['title']}  [{article['id']}]  removed {article['cleaning']}")
            typer.echo(article["text"])
        typer.echo("")
        print_summary(summary, as_json)
    finally:
        server.stop()
    raise typer.Exit(0 if summary["finished"] else 1)
