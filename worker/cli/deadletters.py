"""``ingest dead-letters list|replay``: what failed for good, and sending it back through the pipeline."""

from __future__ import annotations

import json
import re
import time
from typing import Annotated

import typer

from worker.cli.common import JsonOpt, connect, connect_broker
from worker.cli.errors import USAGE, CliError

app = typer.Typer(help="Inspect and replay dead letters.", no_args_is_help=True)

_STREAM_ID = re.compile(r"\d+(-\d+)?")


@app.command("list")
def dead_list(count: int = 50, reason: str | None = None, as_json: JsonOpt = False) -> None:
    """The latest dead letters: id, time, stage, reason, URL."""
    from worker.publish.deadletter import DeadLetters

    for letter in DeadLetters(connect()).list(count, reason):
        if as_json:
            typer.echo(json.dumps(letter.as_dict(), ensure_ascii=False))
        else:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(letter.at))
            typer.echo(f"{letter.entry_id}  {when}  {letter.stage:8} {letter.reason:20} {letter.url}")


@app.command("replay")
def dead_replay(
    entry_ids: Annotated[list[str] | None, typer.Argument(help="dead-letter ids (default: all listed)")] = None,
    reason: str | None = None,
    count: int = 1000,
) -> None:
    """Send dead letters back through the pipeline; replayed entries are removed from the stream."""
    from worker.cli.replay import replay
    from worker.publish.deadletter import DeadLetters

    bad = [i for i in entry_ids or () if not _STREAM_ID.fullmatch(i)]
    if bad:
        raise CliError(f"not a dead-letter id: {', '.join(bad)} (ids look like 1712345678901-0: "
                       "`ingest dead-letters list`)", USAGE)
    dead = DeadLetters(connect())
    connect_broker()  # a page is sent back through the broker
    missing: list[str] = []
    if entry_ids:
        letters = []
        for entry_id in entry_ids:
            letter = dead.get(entry_id)
            if letter is None:
                missing.append(entry_id)
            else:
                letters.append(letter)
    else:
        letters = dead.list(count, reason)
    n = 0
    for letter in letters:
        why = replay(letter)
        if why is None:
            dead.delete(letter.entry_id)
            n += 1
        else:
            typer.echo(f"not replayable ({why}), kept: {letter.entry_id}", err=True)
    typer.echo(f"replayed {n}")
    if missing:
        raise CliError(f"no dead letter with id {', '.join(missing)} (already replayed? `ingest dead-letters list`)")
