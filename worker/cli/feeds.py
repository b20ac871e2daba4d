"""``ingest feeds ...``: the feed list file (list with each feed's polling state, add, remove, check, OPML import
and export, discovery). Entries that fail validation are shown, counted and kept as written, never dropped by an
edit."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from worker.cli.common import FeedsOpt, JsonOpt, connect, use_feeds
from worker.cli.errors import USAGE, CliError
from worker.core.settings import get_settings
from worker.feeds.feedlist import CheckedList, Entry, Feed, Problem, read_feed_list, save_feeds

app = typer.Typer(help="Manage the feed list.", no_args_is_help=True)


def _current(path: Path, *, missing_ok: bool) -> CheckedList:
    """The feed list at ``path`` (an empty one if it does not exist and ``missing_ok``), its bad entries noted
    once on stderr: an edit keeps them as they are."""
    if missing_ok and not path.exists():
        return CheckedList()
    checked = read_feed_list(path)
    if checked.problems:
        typer.echo(f"note: {path} has {len(checked.problems)} invalid entries, kept as they are and not polled "
                   f"(`ingest feeds check` lists them)", err=True)
    return checked


@app.command("list")
def feeds_list(feeds: FeedsOpt = None, as_json: JsonOpt = False) -> None:
    """The feed list with each feed's polling state: ok, failing (error count, last error, next try), new,
    disabled or invalid (what is wrong), and its current interval. State is read from ``REDIS_URL`` when it is
    set."""
    checked = read_feed_list(use_feeds(feeds))
    valid = checked.feeds
    states: dict[str, dict[str, str]] = {}
    if get_settings().redis_url is not None:  # an embedded Redis started just for this would know nothing
        from worker.poll.schedule import Schedule

        states = Schedule(connect()).describe_many([f.id for f in valid])
    now = time.time()
    for entry in checked.entries:
        if isinstance(entry, Problem):
            _show_invalid(entry, as_json)
            continue
        state = feed_status(entry.enabled, states.get(entry.id), now)
        if as_json:
            typer.echo(json.dumps(entry.model_dump(mode="json") | {"id": entry.id, "state": state}))
            continue
        line = [entry.url, entry.name or "", state["status"]]
        if state["status"] == "failing":
            line.append(f"errors={state['errors']} last_error={state['last_error']}")
        if "next_poll_in" in state:
            line.append(f"next={_ago(state['next_poll_in'])} interval={_ago(state['interval'])}")
        typer.echo("\t".join(line))


def _show_invalid(problem: Problem, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"url": problem.url, "entry": problem.entry, "line": problem.line,
                               "state": {"status": "invalid", "error": problem.message}}))
    else:
        where = f"line {problem.line}, " if problem.line else ""
        typer.echo("\t".join([problem.url or "-", "", "invalid", f"{where}feed #{problem.entry}: {problem.message}"]))


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


@app.command("check")
def feeds_check(
    path: Annotated[Path | None, typer.Argument(help="feeds YAML file (default: INGEST_FEEDS)")] = None,
) -> None:
    """Validate a feed list without polling anything: every problem on its own line (file:line: feed #N: what is
    wrong), exit 1 if there is any, 2 if the file cannot be read at all. For the CI of feed lists."""
    target = path if path is not None else get_settings().feeds
    checked = read_feed_list(target)
    for problem in checked.problems:
        typer.echo(str(problem))
    if checked.problems:
        typer.echo(f"{target}: {len(checked.problems)} invalid entries (skipped when polling), "
                   f"{len(checked.feeds)} valid feeds", err=True)
        raise typer.Exit(1)
    typer.echo(f"{target}: {len(checked.feeds)} feeds, all valid", err=True)


@app.command("add")
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

    from worker.feeds.feedlist import validation_message

    path = use_feeds(feeds)
    try:
        feed = Feed.model_validate({
            "url": url, "name": name, "interval": interval, "tags": tuple(tag or ()), "route": route,
            "language": language, "min_interval": min_interval, "max_interval": max_interval,
            "enabled": not disabled, "robots": not no_robots, "retry_after_scope": retry_after_scope,
        })
    except ValidationError as exc:
        raise CliError(validation_message(exc), USAGE) from exc
    current = _current(path, missing_ok=True)
    if any(f.id == feed.id for f in current.feeds):
        typer.echo(f"already listed: {url}")
        return
    save_feeds(path, [*current.entries, feed])
    typer.echo(f"added: {url}")


@app.command("remove")
def feeds_remove(url: str, feeds: FeedsOpt = None) -> None:
    """Take a feed off the list (an invalid entry too, given its url as written)."""
    path = use_feeds(feeds)
    current = _current(path, missing_ok=False)
    try:
        target: str | None = Feed(url=url).id
    except ValueError:  # not a feed URL: it can still match an invalid entry's url, as written
        target = None

    def goes(entry: Entry) -> bool:
        return entry.id == target if isinstance(entry, Feed) else entry.url == url.strip()

    kept = [e for e in current.entries if not goes(e)]
    if len(kept) == len(current.entries):
        raise CliError(f"not listed: {url}")
    save_feeds(path, kept)
    typer.echo(f"removed: {url}")


@app.command("import")
def feeds_import(
    file: Annotated[Path, typer.Argument(help="OPML file, as feed readers export it")],
    feeds: FeedsOpt = None,
) -> None:
    """Merge the feeds of an OPML file into the feed list; feeds already listed are kept as they are."""
    from worker.feeds.opml import OpmlError, parse_opml

    path = use_feeds(feeds)
    try:
        parsed = parse_opml(file.read_bytes())
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror or exc}", USAGE) from exc
    except OpmlError as exc:
        raise CliError(f"{file}: {exc}", USAGE) from exc
    current = _current(path, missing_ok=True)
    listed = {f.id for f in current.feeds}
    added = [f for f in parsed.feeds if f.id not in listed]
    skipped = parsed.skipped + [(f.url, "already listed: kept as it is") for f in parsed.feeds if f.id in listed]
    if added:
        save_feeds(path, [*current.entries, *added])
    for what, why in skipped:
        typer.echo(f"skipped: {what}: {why}", err=True)
    typer.echo(f"added {len(added)}, skipped {len(skipped)} (feed list: {path})")


@app.command("export")
def feeds_export(
    feeds: FeedsOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write here instead of stdout")] = None,
) -> None:
    """Write the feed list as OPML 2.0, with every per-feed setting, for a feed reader or another worker."""
    from worker.feeds.opml import to_opml, unexportable_tags

    checked = read_feed_list(use_feeds(feeds))
    for problem in checked.problems:
        typer.echo(f"warning: left out {problem}", err=True)
    feed_list = checked.feeds
    for feed in feed_list:
        for tag in unexportable_tags(feed):
            typer.echo(f"warning: {feed.url}: tag {tag!r} contains ',' or '/' and will read back split", err=True)
    data = to_opml(feed_list)
    if output is None:
        typer.echo(data, nl=False)
        return
    output.write_bytes(data)
    typer.echo(f"exported {len(feed_list)} feeds to {output}", err=True)


@app.command("discover")
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
    from worker.net.fetch import FetchError

    logs.configure()  # discovery logs go to stderr; stdout carries only the list
    try:
        found = discover(url)
    except FetchError as exc:
        raise CliError(f"{url}: {exc.reason}: {exc}", USAGE) from exc
    for item in found:
        note = "" if item.pollable else "\t(not pollable: the poller reads RSS, Atom and RDF)"
        typer.echo(f"{item.url}\t{item.type}\t{item.source}\t{item.title}{note}")
    if not found:
        raise CliError(f"no feeds found at {url}")
    if not (add or add_all):
        return
    pollable = [item for item in found if item.pollable]
    if not pollable:
        raise CliError("nothing to add: no feed found can be polled")
    path = use_feeds(feeds)
    current = _current(path, missing_ok=True)
    listed = {f.id for f in current.feeds}
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
        save_feeds(path, [*current.entries, *new])
