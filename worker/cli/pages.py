"""``ingest extract`` (one page through fetch, extract and clean) and ``ingest eval`` (cleaning quality on an
evaluation set)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from worker.cli.common import connect, interactive
from worker.cli.errors import USAGE, CliError


def extract(url_or_file: Annotated[str, typer.Argument(help="http(s) URL or local HTML file")]) -> None:
    """One page through fetch + extract + clean; prints the JSON that would be published."""
    from worker.context import Context
    from worker.net.fetch import FetchError, decode_html, fetch
    from worker.publish.step import process_html

    ctx = Context(connect())
    if url_or_file.startswith(("http://", "https://")):
        try:
            resp = fetch(url_or_file, kind="page", settings=ctx.settings, client=ctx.http(url_or_file))
        except FetchError as exc:
            raise CliError(f"{exc.reason}: {exc}", USAGE) from exc
        html, url = decode_html(resp), resp.url
    elif "://" in url_or_file:
        raise CliError(f"{url_or_file}: only http(s) URLs can be fetched (or give an HTML file)", USAGE)
    else:
        path = Path(url_or_file)
        if not path.is_file():
            raise CliError(f"no such file: {path} (give an http(s) URL or an HTML file)", USAGE)
        html, url = path.read_bytes().decode("utf-8", "replace"), "http://localhost/" + path.name
    try:
        article = process_html(ctx, html, url)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    typer.echo(json.dumps(article.message(), ensure_ascii=False, indent=2))


def eval_cmd(
    path: Path,
    holdout: Annotated[str | None, typer.Option(help="'period': leave one period out (big9)")] = None,
    cold: Annotated[bool, typer.Option(help="also each site's first page, with the fleet prior only")] = False,
) -> None:
    """Cleaning quality on an evaluation set (../shared/eval/big9 or ../shared/eval/aeb)."""
    from worker.cli.evaluate import report
    from worker.cli.progress import count_display

    if not path.is_dir():
        raise CliError(f"no evaluation set at {path}: give a folder such as ../shared/eval/big9", USAGE)
    r = connect()
    try:
        with count_display(interactive(), "groups scored") as show:
            text = report(path, r, holdout=holdout, cold=cold, progress=show)
    except (FileNotFoundError, ValueError) as exc:  # not an evaluation set, or a protocol it cannot run
        raise CliError(str(exc), USAGE) from exc
    typer.echo(text)
