"""Live progress of long commands on a terminal (rich, which typer already brings): how far ``ingest run
--once`` and ``ingest eval`` have got, redrawn in place on stderr. Piped or with ``--json`` nothing is drawn."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from worker.core import runs


def _bars(console: Console) -> Progress:
    return Progress(TextColumn("{task.description:<13}"), BarColumn(bar_width=30), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("{task.fields[detail]}"), console=console)


class RunDisplay:
    """Feeds polled of total, pages published / duplicate / dead-lettered / pending, elapsed time. ``print``
    writes a line (a worker's log line) above the bars without breaking them."""

    def __init__(self, bars: Progress | None) -> None:
        self._bars = bars
        if bars is not None:
            self._feeds = bars.add_task("feeds polled", total=None, detail="")
            self._pages = bars.add_task("pages done", total=None, detail="")

    def show(self, now: runs.Progress) -> None:
        if self._bars is None:
            return
        busy = f"{now.deferred} polls put off (host busy), sent again" if now.deferred else ""
        self._bars.update(self._feeds, completed=now.feeds_done, total=now.feeds, detail=busy)
        self._bars.update(self._pages, completed=now.pages - now.pages_pending, total=now.pages,
                          detail=f"published {now.published} · duplicate {now.duplicates} · "
                                 f"dead-lettered {now.dead_letters} · pending {now.pages_pending}")

    def print(self, line: str) -> None:
        if self._bars is not None:
            self._bars.console.print(line, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def run_display(enabled: bool) -> Iterator[RunDisplay]:
    if not enabled:
        yield RunDisplay(None)
        return
    with _bars(Console(stderr=True)) as bars:
        yield RunDisplay(bars)


class CountDisplay:
    """One bar: items done of total (``ingest eval``: groups of pages scored)."""

    def __init__(self, bars: Progress | None, what: str) -> None:
        self._bars = bars
        if bars is not None:
            self._task = bars.add_task(what, total=None, detail="")

    def __call__(self, done: int, total: int, detail: str = "") -> None:
        if self._bars is not None:
            self._bars.update(self._task, completed=done, total=total, detail=detail)


@contextmanager
def count_display(enabled: bool, what: str) -> Iterator[CountDisplay]:
    if not enabled:
        yield CountDisplay(None, what)
        return
    with _bars(Console(stderr=True)) as bars:
        yield CountDisplay(bars, what)
