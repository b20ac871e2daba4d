"""What every stage's steps need, built once per worker process: the Redis client, settings, the HTTP client
and the Redis-backed structures (schedule, seen-set, site memory, story index, publisher, limiter, robots).

The stages' steps take a ``Context`` and typed messages; they never import Celery, so tests, ``ingest extract``
and the evaluation call them directly. It sits above the stages because it holds a part of each.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import httpx
import redis
import structlog

from worker import metrics
from worker.clean.memory import SiteMemory
from worker.core import runs
from worker.core.settings import Settings, get_settings
from worker.dedup.buckets import BucketSet
from worker.dedup.stories import StoryIndex
from worker.download.robots import Robots
from worker.net.fetch import Clients, FetchResult, Kind, fetch
from worker.net.politeness import Politeness
from worker.poll.schedule import Schedule
from worker.publish.deadletter import CURRENT_TASK, DeadLetters
from worker.publish.writer import Publisher

log = structlog.get_logger("worker.context")


@dataclass
class Context:
    """Everything a step needs, built once per worker process (cached properties: built on first use)."""

    r: redis.Redis
    settings: Settings = field(default_factory=get_settings)

    @cached_property
    def clients(self) -> Clients:
        return Clients(self.settings)

    def http(self, url: str) -> httpx.Client:
        """The guarded client for ``url``'s host."""
        return self.clients.for_url(url)

    @cached_property
    def schedule(self) -> Schedule:
        return Schedule(self.r, self.settings)

    @cached_property
    def seen(self) -> BucketSet:
        return BucketSet(self.r, "seen", self.settings.seen_ttl_days * 86400)

    @cached_property
    def publisher(self) -> Publisher:
        return Publisher(self.r, self.settings)

    @cached_property
    def sites(self) -> SiteMemory:
        return SiteMemory(self.r, self.settings)

    @cached_property
    def stories(self) -> StoryIndex:
        return StoryIndex(self.r, self.settings)

    @cached_property
    def dead(self) -> DeadLetters:
        return DeadLetters(self.r, self.settings)

    @cached_property
    def polite(self) -> Politeness:
        return Politeness(self.r, self.settings)

    @cached_property
    def robots(self) -> Robots:
        return Robots(self.r, self.settings, self.clients, self.polite)

    def warm(self) -> Context:
        """Build every part now: a thread pool must not race to build them on first use."""
        for name in ("clients", "schedule", "seen", "publisher", "sites", "stories", "dead", "polite", "robots"):
            getattr(self, name)
        return self

    def polite_fetch(self, url: str, kind: Kind, *, etag: str | None = None, last_modified: str | None = None,
                     reserved_at: float = 0.0) -> FetchResult:
        """``fetch`` inside one of the host's politeness slots; the fetch histogram times the download only, not
        the wait. Raises HostBusy or FetchError."""
        with self.polite.slot(url, kind=kind, reserved_at=reserved_at):
            started = time.monotonic()
            in_flight = metrics.DOWNLOADS_IN_FLIGHT.labels(kind)
            in_flight.inc()
            try:
                return fetch(url, kind=kind, settings=self.settings, etag=etag, last_modified=last_modified,
                             client=self.http(url))
            finally:
                in_flight.dec()
                metrics.FETCH_SECONDS.observe(time.monotonic() - started)

    def dead_letter(self, *, stage: str, reason: str, url: str, error: str, payload: dict[str, Any],
                    run_id: str | None) -> None:
        """A feed or page that failed for good: a record on the dead-letter stream, counted; once per task (the
        Celery task running this, if any), however often it is delivered."""
        if not self.dead.record(stage=stage, reason=reason, url=url, error=error, payload=payload,
                                task_id=CURRENT_TASK.get()):
            log.info("dead_letter_recorded_before", stage=stage, reason=reason)
            return
        metrics.DEAD_LETTERS.labels(reason=reason).inc()
        runs.count(self.r, f"dead_letters:{reason}", run_id=run_id)
