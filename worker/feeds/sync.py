"""Keeping the schedule in step with the feed list file: re-read on change, valid entries synced, every problem
reported once and recorded.

A bad edit of the file while workers run must not stop polling: a bad entry is skipped and the other feeds are
synced; a file that cannot be read or parsed at all keeps the feeds already scheduled.
"""

from __future__ import annotations

import structlog

from worker.feeds.feedlist import FeedList, FeedListError
from worker.poll.schedule import Schedule

log = structlog.get_logger("worker.feeds.sync")


def refresh(schedule: Schedule, feed_list: FeedList) -> None:
    """Sync ``schedule`` with ``feed_list`` if the file changed (cheap when it did not: one ``stat``)."""
    try:
        feeds, changed = feed_list.get()
    except FeedListError as exc:
        if schedule.record_problems([str(exc)]):
            log.error("feeds_file_invalid", path=str(feed_list.path), error=str(exc),
                      kept="the feeds already scheduled keep being polled")
        return
    if not changed:
        return
    problems = feed_list.problems
    if schedule.record_problems([str(p) for p in problems]):
        for p in problems:
            log.error("feed_entry_invalid", path=p.source, entry=p.entry, line=p.line, error=p.message,
                      skipped="this entry is not polled; the others are")
    added, removed = schedule.sync(feeds)
    log.info("feeds_synced", feeds=len(feeds), added=added, removed=removed, invalid=len(problems))
