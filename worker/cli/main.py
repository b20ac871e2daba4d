"""The ``ingest`` command: assembles the sub-commands (one module each) into one typer app, and runs it so that
an expected error is one line and an exit code (``worker.cli.errors``)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from worker.cli import deadletters, errors, feeds, pages, run, stats, tail, websub
from worker.core.settings import get_settings

app = typer.Typer(help="News ingest worker: feeds -> pages -> clean articles -> Redis Streams.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def _settle(
    debug: Annotated[bool, typer.Option("--debug", help="show the Python traceback of an error")] = False,
) -> None:
    # Every command starts from valid settings: a bad one stops it before anything runs, all listed at once.
    get_settings()


app.command()(run.worker)
app.command()(run.beat)
app.command()(run.run)
app.command()(pages.extract)
app.command()(tail.tail)
app.command()(stats.stats)
app.command("eval")(pages.eval_cmd)
app.add_typer(feeds.app, name="feeds")
app.add_typer(deadletters.app, name="dead-letters")
app.add_typer(websub.app, name="websub")


def main() -> None:
    args = sys.argv[1:]
    debug = "--debug" in args
    if debug:  # accepted anywhere on the line, as people add it after a failing command
        args = ["--debug", *(a for a in args if a != "--debug")]
    errors.run(app, args, debug=debug)


if __name__ == "__main__":
    main()
