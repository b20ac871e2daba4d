"""The ``ingest`` command line: run the worker and beat, poll once, extract one page, follow streams, manage
feeds and dead letters, print stats, and evaluate cleaning quality."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from worker.core.settings import get_settings

if TYPE_CHECKING:
    from worker.feeds.feedlist import Feed

app = typer.Typer(help="News ingest worker: feeds -> pages -> clean articles -> Redis Streams.",
                  no_args_is_help=True, add_completion=False)
feeds_app = typer.Typer(help="Manage the feed list.", no_args_is_help=True)
dead_app = typer.Typer(help="Inspect and replay dead letters.", no_args_is_help=True)
app.add_typer(feeds_app, name="feeds")
app.add_typer(dead_app, name="dead-letters")
websub_app = typer.Typer(help="Push (WebSub): the callback endpoint hubs deliver to.", no_args_is_help=True)
app.add_typer(websub_app, name="websub")

FeedsOpt = Annotated[Path | None, typer.Option("--feeds", help="feeds YAML file (default: INGEST_FEEDS)")]


def _use_feeds(path: Path | None) -> Path:
    if path is not None:
        os.environ["INGEST_FEEDS"] = str(path.resolve())
        get_settings.cache_clear()
    return get_settings().feeds


def _redis() -> Any:
    from worker.core import logs
    from worker.core.redisconn import get_redis

    logs.configure()
    return get_redis()


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "worker.app", *args]


# --- running ---------------------------------------------------------------------------------------------------


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="comma-separated queues to consume")] = "poll,fetch,publish",
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", help="worker processes")] = None,
    loglevel: str = "INFO",
    beat: Annotated[bool, typer.Option(help="also run beat in this worker (one machine)")] = False,
    pool: Annotated[str, typer.Option(help="prefork (CPU-bound fetch/extract) or threads (many slow polls)")]
    = "prefork",
) -> None:
    """Run a Celery worker (the same as `celery -A worker.app worker`)."""
    from worker.core.redisconn import redis_url

    redis_url()  # start the embedded Redis here, before Celery forks, if REDIS_URL is unset
    n = concurrency or get_settings().concurrency
    args = ["worker", "-Q", queues, "-c", str(n), "-l", loglevel, "-P", pool]
    if beat:
        args.append("-B")
    _exec_celery(args)


@app.command()
def beat(loglevel: str = "INFO") -> None:
    """Run Celery beat with the Redis-locked scheduler (several may run; one dispatches)."""
    _exec_celery(["beat", "-l", loglevel])


def _exec_celery(args: list[str]) -> None:
    """Become Celery (exec), so SIGTERM from a container runtime reaches it and its warm shutdown runs. Only
    with the embedded Redis must this process stay, as the server's owner; it then forwards SIGTERM/SIGINT."""
    from worker.core.redisconn import embedded_running

    if not embedded_running():
        sys.stdout.flush()
        os.execv(sys.executable, _celery(*args))
    # Celery in its own session gets a terminal's Ctrl-C once, from here (twice would mean a cold shutdown)
    proc = subprocess.Popen(_celery(*args), start_new_session=True)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))
    raise typer.Exit(proc.wait())


@app.command()
def run(
    once: Annotated[bool, typer.Option("--once", help="poll every feed once, process everything, exit")] = False,
    feeds: FeedsOpt = None,
    demo: Annotated[bool, typer.Option("--demo", help="serve the bundled sample site and ingest it")] = False,
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c")] = None,
    timeout: Annotated[float, typer.Option(help="--once: give up after this many seconds")] = 600.0,
) -> None:
    """Worker and beat together for one machine; with REDIS_URL unset an embedded Redis is started."""
    from worker.core.redisconn import redis_url

    redis_url()
    if demo:
        _run_demo(concurrency, timeout)
        return
    path = _use_feeds(feeds)
    if once:
        summary = run_once(path, concurrency=concurrency, timeout=timeout)
        typer.echo(json.dumps(summary, indent=2))
        raise typer.Exit(0 if summary["finished"] else 1)
    worker(queues="poll,fetch,publish", concurrency=concurrency, loglevel="INFO", beat=True, pool="prefork")


def run_once(path: Path, *, concurrency: int | None = None, timeout: float = 600.0,
             extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Poll every feed of ``path`` once through real workers and wait until every fanned-out task is done."""
    from worker.core import runs
    from worker.feeds.feedlist import load_feeds
    from worker.pipeline import Context
    from worker.tasks import poll_feed

    r = _redis()
    feed_list = load_feeds(path)
    ctx = Context(r)
    pipe = r.pipeline(transaction=False)
    for feed in feed_list:  # make the feeds known to workers without touching the live schedule
        pipe.hset(f"{get_settings().key_prefix}:feeds:config", feed.id, feed.model_dump_json())
    pipe.execute()
    run_id = uuid.uuid4().hex[:12]
    runs.start(r, run_id, [f.id for f in feed_list])
    env = os.environ | {"INGEST_METRICS_PORT": "0"} | (extra_env or {})
    n = concurrency or ctx.settings.concurrency
    proc = subprocess.Popen(
        _celery("worker", "-Q", "poll,fetch,publish", "-c", str(n), "-l", "WARNING",
                "-n", f"once-{run_id}@%h", "--without-gossip", "--without-mingle"),
        env=env, stdout=sys.stderr)  # stdout carries only the summary, for scripts
    started = time.monotonic()
    try:
        for feed in feed_list:
            poll_feed.apply_async((feed.id, run_id), queue="poll")
        while runs.pending(r, run_id) > 0 and time.monotonic() - started < timeout:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)  # warm shutdown: in-flight tasks finish or return to the queue
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    totals = runs.totals(r, run_id)
    left = totals.pop("pending", 0)
    totals.pop("started", None)
    return {"run": run_id, "feeds": len(feed_list), "finished": left <= 0,
            "seconds": round(time.monotonic() - started, 2), "counts": totals}


def _run_demo(concurrency: int | None, timeout: float) -> None:
    from worker.demo.serve import serve_demo
    from worker.feeds.feedlist import Feed, save_feeds

    os.environ["INGEST_ALLOW_PRIVATE_NETWORKS"] = "true"  # the demo site is served on localhost
    # one local host serves the whole demo site: per-host politeness would only make the demo crawl
    from worker.core.settings import LOCAL_UNLIMITED_ENV

    for name, value in LOCAL_UNLIMITED_ENV.items():
        os.environ.setdefault(name, value)
    get_settings.cache_clear()
    server, site = serve_demo()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "feeds.yaml"
            save_feeds(path, [Feed(url=server.url(site.feed_path), name="demo", tags=("demo",))])
            summary = run_once(path, concurrency=concurrency, timeout=timeout)
        r = _redis()
        stream = get_settings().default_stream
        for _, fields in r.xrange(stream):
            article = json.loads(fields[b"data"])
            typer.echo(f"\n=== {article['title']}  [{article['id']}]  removed {article['cleaning']}")
            typer.echo(article["text"])
        typer.echo("\n" + json.dumps(summary, indent=2))
    finally:
        server.stop()


# --- one page -----------------------------------------------------------------------------------------------------


@app.command()
def extract(url_or_file: Annotated[str, typer.Argument(help="http(s) URL or local HTML file")]) -> None:
    """One page through fetch + extract + clean; prints the JSON that would be published."""
    from worker.net.fetch import FetchError, decode_html, fetch
    from worker.pipeline import Context, process_html

    ctx = Context(_redis())
    if url_or_file.startswith(("http://", "https://")):
        try:
            resp = fetch(url_or_file, kind="page", settings=ctx.settings, client=ctx.http)
        except FetchError as exc:
            typer.echo(f"error: {exc.reason}: {exc}", err=True)
            raise typer.Exit(2) from exc
        html, url = decode_html(resp), resp.url
    else:
        path = Path(url_or_file)
        if not path.is_file():
            typer.echo(f"error: no such file: {path}", err=True)
            raise typer.Exit(2)
        html, url = path.read_bytes().decode("utf-8", "replace"), "http://localhost/" + path.name
    try:
        article = process_html(ctx, html, url)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(article.message(), ensure_ascii=False, indent=2))


# --- streams ------------------------------------------------------------------------------------------------------


@app.command()
def tail(
    stream: str,
    from_start: Annotated[bool, typer.Option("--from-start", help="begin at the oldest message")] = False,
    follow: Annotated[bool, typer.Option("--follow/--no-follow", help="wait for new messages")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    group: Annotated[str | None, typer.Option("--group", help="read as this consumer group")] = None,
    consumer: Annotated[str, typer.Option("--consumer", help="consumer name within --group")] = "tail",
    claim_idle: Annotated[float, typer.Option(help="--group: reclaim messages idle this many seconds")] = 60.0,
    count: Annotated[int | None, typer.Option(help="stop after this many messages")] = None,
) -> None:
    """Follow a stream for a human, or as a consumer group member (acknowledging, reclaiming stale messages)."""
    from worker.publish.consume import Consumer, read_plain

    r = _redis()
    shown = 0

    def show(entry_id: str, article: dict[str, Any]) -> bool:
        nonlocal shown
        shown += 1
        if as_json:
            typer.echo(json.dumps(article, ensure_ascii=False))
        else:
            typer.echo(f"{entry_id}  {article.get('published') or '':25.25}  {article.get('site', ''):20.20}  "
                       f"{article.get('title', '')}")
        return count is None or shown < count

    if group:
        Consumer(r, stream, group, consumer, claim_idle=claim_idle).run(show, follow=follow)
    else:
        read_plain(r, stream, show, from_start=from_start, follow=follow)


# --- feeds ----------------------------------------------------------------------------------------------------------


@feeds_app.command("list")
def feeds_list(feeds: FeedsOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The feed list with each feed's polling state: ok, failing (error count, last error, next try), new or
    disabled, and its current interval. State is read from ``REDIS_URL`` when it is set."""
    from worker.feeds.feedlist import load_feeds

    listed = load_feeds(_use_feeds(feeds))
    states: dict[str, dict[str, str]] = {}
    if get_settings().redis_url is not None:  # an embedded Redis started just for this would know nothing
        from worker.poll.schedule import Schedule

        states = Schedule(_redis()).describe_many([f.id for f in listed])
    now = time.time()
    for feed in listed:
        state = feed_status(feed.enabled, states.get(feed.id), now)
        if as_json:
            typer.echo(json.dumps(feed.model_dump(mode="json") | {"id": feed.id, "state": state}))
            continue
        line = [feed.url, feed.name or "", state["status"]]
        if state["status"] == "failing":
            line.append(f"errors={state['errors']} last_error={state['last_error']}")
        if "next_poll_in" in state:
            line.append(f"next={_ago(state['next_poll_in'])} interval={_ago(state['interval'])}")
        typer.echo("\t".join(line))


def feed_status(enabled: bool, raw: dict[str, str] | None, now: float) -> dict[str, Any]:
    """What `feeds list` shows of one feed's state hash (see worker.poll.schedule)."""
    state: dict[str, Any] = {"status": "disabled" if not enabled else "new" if not raw else "ok"}
    if not raw:
        return state
    errors = int(raw.get("errors") or 0)
    if errors and enabled:
        state["status"] = "failing"
    state |= {"errors": errors, "last_error": raw.get("last_error") or None,
              "last_status": int(raw["last_status"]) if raw.get("last_status") else None}
    if raw.get("next_due") and enabled:
        state["next_poll_in"] = round(float(raw["next_due"]) - now, 1)
    state["interval"] = float(raw.get("interval") or 0) or None
    return state


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{sign}{seconds / size:.1f}{unit}"
    return f"{sign}{seconds:.0f}s"


@feeds_app.command("add")
def feeds_add(
    url: str,
    feeds: FeedsOpt = None,
    name: str | None = None,
    interval: Annotated[float | None, typer.Option(help="fixed seconds between polls")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag")] = None,
    route: str | None = None,
    language: str | None = None,
    min_interval: Annotated[float | None, typer.Option(help="adaptive polling: at least this many seconds")]
    = None,
    max_interval: Annotated[float | None, typer.Option(help="adaptive polling: at most this many seconds")]
    = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="list the feed but do not poll it")] = False,
    no_robots: Annotated[bool, typer.Option("--no-robots", help="ignore robots.txt for its article pages")]
    = False,
    retry_after_scope: Annotated[str | None, typer.Option(help="feed or host: what a Retry-After holds back")]
    = None,
) -> None:
    """Add a feed (picked up by the dispatcher within one tick, no restart)."""
    from pydantic import ValidationError

    from worker.feeds.feedlist import Feed, load_feeds, save_feeds

    path = _use_feeds(feeds)
    current = load_feeds(path) if path.exists() else []
    try:
        feed = Feed.model_validate({
            "url": url, "name": name, "interval": interval, "tags": tuple(tag or ()), "route": route,
            "language": language, "min_interval": min_interval, "max_interval": max_interval,
            "enabled": not disabled, "robots": not no_robots, "retry_after_scope": retry_after_scope,
        })
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "feed"
        typer.echo(f"error: {where}: {str(error['msg']).removeprefix('Value error, ')}", err=True)
        raise typer.Exit(2) from exc
    if any(f.id == feed.id for f in current):
        typer.echo(f"already listed: {url}")
        return
    save_feeds(path, [*current, feed])
    typer.echo(f"added: {url}")


@feeds_app.command("remove")
def feeds_remove(url: str, feeds: FeedsOpt = None) -> None:
    from worker.feeds.feedlist import Feed, load_feeds, save_feeds

    path = _use_feeds(feeds)
    current = load_feeds(path)
    target = Feed(url=url).id
    kept = [f for f in current if f.id != target]
    if len(kept) == len(current):
        typer.echo(f"not listed: {url}", err=True)
        raise typer.Exit(1)
    save_feeds(path, kept)
    typer.echo(f"removed: {url}")


def _current_feeds(path: Path, *, missing_ok: bool) -> list[Feed]:
    """The feed list at ``path``, or a clear error and exit 2 instead of a traceback."""
    from worker.feeds.feedlist import FeedListError, load_feeds

    if missing_ok and not path.exists():
        return []
    try:
        return load_feeds(path)
    except FeedListError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@feeds_app.command("import")
def feeds_import(
    file: Annotated[Path, typer.Argument(help="OPML file, as feed readers export it")],
    feeds: FeedsOpt = None,
) -> None:
    """Merge the feeds of an OPML file into the feed list; feeds already listed are kept as they are."""
    from worker.feeds.feedlist import save_feeds
    from worker.feeds.opml import OpmlError, parse_opml

    path = _use_feeds(feeds)
    try:
        parsed = parse_opml(file.read_bytes())
    except OSError as exc:
        typer.echo(f"error: cannot read {file}: {exc}", err=True)
        raise typer.Exit(2) from exc
    except OpmlError as exc:
        typer.echo(f"error: {file}: {exc}", err=True)
        raise typer.Exit(2) from exc
    current = _current_feeds(path, missing_ok=True)
    listed = {f.id for f in current}
    added = [f for f in parsed.feeds if f.id not in listed]
    skipped = parsed.skipped + [(f.url, "already listed: kept as it is") for f in parsed.feeds if f.id in listed]
    if added:
        save_feeds(path, [*current, *added])
    for what, why in skipped:
        typer.echo(f"skipped: {what}: {why}", err=True)
    typer.echo(f"added {len(added)}, skipped {len(skipped)} (feed list: {path})")


@feeds_app.command("export")
def feeds_export(
    feeds: FeedsOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write here instead of stdout")] = None,
) -> None:
    """Write the feed list as OPML 2.0, with every per-feed setting, for a feed reader or another worker."""
    from worker.feeds.opml import to_opml, unexportable_tags

    feed_list = _current_feeds(_use_feeds(feeds), missing_ok=False)
    for feed in feed_list:
        for tag in unexportable_tags(feed):
            typer.echo(f"warning: {feed.url}: tag {tag!r} contains ',' or '/' and will read back split", err=True)
    data = to_opml(feed_list)
    if output is None:
        typer.echo(data, nl=False)
        return
    output.write_bytes(data)
    typer.echo(f"exported {len(feed_list)} feeds to {output}", err=True)


@feeds_app.command("discover")
def feeds_discover(
    url: Annotated[str, typer.Argument(help="a site's home page (or any page of it, or a feed)")],
    add: Annotated[bool, typer.Option("--add", help="add the first feed found that can be polled")] = False,
    add_all: Annotated[bool, typer.Option("--all", help="add every feed found that can be polled (implies --add)")]
    = False,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="with --add: tags of the added feeds")] = None,
    feeds: FeedsOpt = None,
) -> None:
    """List the feeds a site offers (URL, media type, how found, title); --add puts them in the feed list."""
    from worker.core import logs
    from worker.feeds.discover import discover
    from worker.feeds.feedlist import Feed, save_feeds
    from worker.net.fetch import FetchError

    logs.configure()  # discovery logs go to stderr; stdout carries only the list
    try:
        found = discover(url)
    except FetchError as exc:
        typer.echo(f"error: {url}: {exc.reason}: {exc}", err=True)
        raise typer.Exit(2) from exc
    for item in found:
        note = "" if item.pollable else "\t(not pollable: the poller reads RSS, Atom and RDF)"
        typer.echo(f"{item.url}\t{item.type}\t{item.source}\t{item.title}{note}")
    if not found:
        typer.echo(f"no feeds found at {url}", err=True)
        raise typer.Exit(1)
    if not (add or add_all):
        return
    pollable = [item for item in found if item.pollable]
    if not pollable:
        typer.echo("nothing to add: no feed found can be polled", err=True)
        raise typer.Exit(1)
    path = _use_feeds(feeds)
    current = _current_feeds(path, missing_ok=True)
    listed = {f.id for f in current}
    new: list[Feed] = []
    for item in pollable if add_all else pollable[:1]:
        feed = Feed(url=item.url, name=item.title or None, tags=tuple(tag or ()))
        if feed.id in listed:
            typer.echo(f"already listed: {item.url}")
            continue
        listed.add(feed.id)
        new.append(feed)
        typer.echo(f"added: {item.url}")
    if new:
        save_feeds(path, [*current, *new])


# --- stats, dead letters, eval -----------------------------------------------------------------------------------


@app.command()
def stats(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Feeds due, queued tasks, published counts, duplicates and dead letters."""
    from worker.core import runs
    from worker.metrics import queue_depths
    from worker.poll.schedule import Schedule, config_key

    r = _redis()
    sched = Schedule(r)
    data: dict[str, Any] = {
        "feeds": int(r.hlen(config_key())),
        "feeds_due": sched.count_due(),
        "queues": {q: {"depth": d, "oldest_age_seconds": a} for q, (d, a) in queue_depths(r).items()},
        "totals": runs.totals(r),
    }
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(f"feeds: {data['feeds']}  due now: {data['feeds_due']}")
    for q, v in data["queues"].items():
        age = v["oldest_age_seconds"]
        typer.echo(f"queue {q:8} depth {v['depth']:6}  oldest {age:.1f}s" if age is not None
                   else f"queue {q:8} depth {v['depth']:6}")
    for k, v in data["totals"].items():
        typer.echo(f"{k:40} {v}")


@dead_app.command("list")
def dead_list(
    count: int = 50, reason: str | None = None, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    from worker.publish.deadletter import DeadLetters

    for letter in DeadLetters(_redis()).list(count, reason):
        if as_json:
            typer.echo(json.dumps(letter.as_dict(), ensure_ascii=False))
        else:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(letter.at))
            typer.echo(f"{letter.entry_id}  {when}  {letter.stage:8} {letter.reason:20} {letter.url}")


@dead_app.command("replay")
def dead_replay(
    entry_ids: Annotated[list[str] | None, typer.Argument(help="dead-letter ids (default: all listed)")] = None,
    reason: str | None = None,
    count: int = 1000,
) -> None:
    """Send dead letters back through the pipeline; replayed entries are removed from the stream."""
    from worker.cli.replay import replay
    from worker.publish.deadletter import DeadLetters

    dead = DeadLetters(_redis())
    letters = [dead.get(i) for i in entry_ids] if entry_ids else dead.list(count, reason)
    n = 0
    for letter in letters:
        if letter is not None and replay(letter):
            dead.delete(letter.entry_id)
            n += 1
    typer.echo(f"replayed {n}")


@app.command("eval")
def eval_cmd(
    path: Path,
    holdout: Annotated[str | None, typer.Option(help="'period': leave one period out (big9)")] = None,
    cold: Annotated[bool, typer.Option(help="also each site's first page, with the fleet prior only")] = False,
) -> None:
    """Cleaning quality on an evaluation set (../shared/eval/big9 or ../shared/eval/aeb)."""
    from worker.cli.evaluate import report

    try:
        typer.echo(report(path, _redis(), holdout=holdout, cold=cold))
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@websub_app.command("serve")
def websub_serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "0.0.0.0",
    port: Annotated[int | None, typer.Option(help="port (default: INGEST_WEBSUB_PORT)")] = None,
) -> None:
    """Serve the WebSub callback (hub verification and signed deliveries), /healthz, /readyz and /metrics."""
    from worker.cli.websub_callback import start
    from worker.core.logs import get_logger
    from worker.poll import websub

    r = _redis()
    settings = get_settings()
    log = get_logger("worker.poll.websub")
    if not websub.enabled(settings):
        # Still serve: hubs of earlier subscriptions get their 410, and the probes answer.
        log.error("websub_not_configured",
                  error="set INGEST_WEBSUB_CALLBACK_URL and INGEST_WEBSUB_SECRET to receive pushes")
    server = start(r, host, port, settings=settings)
    log.info("websub_serving", host=host, port=server.server_port, callback=settings.websub_callback_url)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    stop.wait()
    server.shutdown()
    server.server_close()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
