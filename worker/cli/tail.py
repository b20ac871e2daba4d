"""``ingest tail STREAM``: follow a stream for a human, or as a member of a consumer group."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from worker.cli.common import connect


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

    r = connect()  # an unreachable Redis is an error, never an empty stream
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
