"""Per-host politeness for the whole fleet: at most ``host_concurrency`` requests in flight and ``host_rate``
requests per second to one host, and host-wide pauses (a Retry-After with host scope), enforced in Redis.

Celery's own rate limits count per worker process; these count for every worker at once. Each operation is one
Lua script, so checking and taking a slot is atomic however many workers race for it, and every script reads
the clock from Redis (``TIME``), so workers with skewed clocks still agree. A slot is a member of a sorted set
scored by its lease expiry: a worker killed mid-download frees its slot when the lease runs out.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple
from urllib.parse import urlsplit

import redis
import structlog

from worker import metrics
from worker.core.keys import key, site_part, tagged
from worker.core.redisconn import lua, one_trip
from worker.core.settings import Settings, get_settings

log = structlog.get_logger("worker.net.politeness")

LEASE_MARGIN = 30.0  # seconds a slot outlives the longest download, so only a dead holder's slot expires
MAX_CRAWL_DELAY = 60.0  # a Crawl-delay above this would make a site unfetchable; it is capped
DEFAULT_LATENCY = 0.3  # seconds a host is assumed to take per request before one of its answers is timed;
# optimistic on purpose: a turn given too early costs one more try, one given too late leaves a slot idle
TURN_WAIT_MAX = 1.0  # seconds a request whose turn has come may wait in its thread for the slot to free
MAX_RESERVE = 300.0  # furthest turn handed out; work put off longer would sit in worker memory past safety
RETRY_AFTER_STATUSES = frozenset({429, 503})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class HostBusy(Exception):
    """The host is at its limit (or paused) for longer than ``host_wait_max``: come back in ``wait`` seconds,
    presenting ``reserved_at`` (the turn the host's queue holds for the caller; 0 when none was given)."""

    def __init__(self, host: str, wait: float, reserved_at: float = 0.0) -> None:
        super().__init__(f"{host} is busy, retry in {wait:.1f} s")
        self.host = host
        self.wait = wait
        self.reserved_at = reserved_at


class Turn(NamedTuple):
    """A request's place in its host's queue: when (epoch seconds, Redis's clock; 0: none given) and how long
    from now (seconds)."""

    at: float
    wait: float


NO_TURN = Turn(0.0, 0.0)


def host_of(url: str) -> str:
    """The politeness unit: lower-case host name, with the port when it is not the scheme's default. Empty
    for a URL without a host (fetch refuses those with its own error)."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return ""
    if host and port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        return f"{host}:{port}"
    return host


def _keys(host: str) -> list[str]:
    part = tagged(site_part(host))  # one slot for the host's keys: the scripts touch them together
    return [key("host", part, "slots"), key("host", part, "next"), key("host", part, "pause"),
            key("host", part, "crawl-delay"), key("host", part, "tail"), key("host", part, "latency")]


class Politeness:
    """The fleet-wide limiter. ``with polite.slot(url, kind="page"): fetch(...)``."""

    def __init__(self, r: redis.Redis, settings: Settings | None = None, *, lease: float | None = None) -> None:
        self.r = r
        self.settings = settings or get_settings()
        # a slot outlives the longest download it can cover, so only a dead holder's slot ever expires
        self.lease = lease if lease is not None else self.settings.total_timeout + LEASE_MARGIN
        rate = self.settings.host_rate
        self.interval = 1.0 / rate if rate > 0 else 0.0  # seconds between two requests to a host (0: no rate)
        self._acquire = r.register_script(lua("worker.net", "acquire"))
        self._release = r.register_script(lua("worker.net", "release"))
        self._pause = r.register_script(lua("worker.net", "pause"))
        self._reserve = r.register_script(lua("worker.net", "reserve"))

    def try_acquire(self, host: str, reserved_at: float = 0.0) -> tuple[str | None, float, float]:
        """One atomic attempt: ``(token, 0, 0)`` when granted, else ``(None, seconds to wait, reservation)``:
        come back after the wait with that reservation to be served ahead of newcomers."""
        s = self.settings
        token = uuid.uuid4().hex
        granted, wait, turn = self._acquire(
            keys=_keys(host),
            args=[token, s.host_concurrency, self.interval, self.lease, reserved_at, DEFAULT_LATENCY, MAX_RESERVE])
        if int(granted) == 1:
            return token, 0.0, 0.0
        return None, max(float(wait), 0.001), float(turn)

    def turns(self, urls: Sequence[str]) -> list[Turn]:
        """The turns of a poll's new pages, handed out before they are sent (one round trip): a page sent with
        its turn's delay comes when its host has room, instead of being turned away and sent again (a second
        task run and message a page). ``NO_TURN`` for a page without a host, of a paused host, or beyond
        ``MAX_RESERVE``: it asks when it comes, as any request."""
        by_host: dict[str, list[int]] = {}
        for i, url in enumerate(urls):
            host = host_of(url)
            if host:
                by_host.setdefault(host, []).append(i)
        out = [NO_TURN] * len(urls)
        if not by_host:
            return out
        trip = one_trip(self.r)
        for host, indexes in by_host.items():
            self._reserve(keys=_keys(host), client=trip, args=[
                len(indexes), self.settings.host_concurrency, self.interval, self.lease, DEFAULT_LATENCY, MAX_RESERVE])
        for indexes, answer in zip(by_host.values(), trip.execute(), strict=True):
            now = float(answer[0])
            for i, offset in zip(indexes, answer[1:], strict=True):
                wait = float(offset)
                if wait >= 0:
                    out[i] = Turn(now + wait, wait)
        return out

    def release(self, host: str, token: str) -> None:
        keys = _keys(host)
        self._release(keys=[keys[0], keys[5]], args=[token, self.lease])

    def pause(self, host: str, seconds: float) -> float:
        """Refuse every request to ``host`` for ``seconds`` (never shortens a longer pause); returns the pause
        actually in force."""
        return float(self._pause(keys=[_keys(host)[2]], args=[max(seconds, 0.001)]))

    def set_crawl_delay(self, host: str, seconds: float | None, ttl: float) -> None:
        """A robots.txt Crawl-delay: the host's requests are spaced by at least this (capped), for ``ttl``."""
        k = _keys(host)[3]
        if seconds and seconds > 0:
            self.r.set(k, repr(min(float(seconds), MAX_CRAWL_DELAY)), px=max(int(ttl * 1000), 1))
        else:
            self.r.delete(k)

    @contextmanager
    def slot(self, url: str, *, kind: str, reserved_at: float = 0.0) -> Iterator[None]:
        """Hold one of the host's slots around a request. Sleeps for its turn only when that comes within
        ``host_wait_max`` seconds; otherwise raises HostBusy at once with the turn reserved for it, so the
        caller puts the work off without holding a worker or a download thread: one busy host must not stall
        the feeds and pages of the others. A caller back at its turn (``reserved_at``) whose slot has not quite
        freed yet waits for it up to ``TURN_WAIT_MAX``."""
        host = host_of(url)
        if not host:
            yield
            return
        started = time.monotonic()
        deadline = started + self.settings.host_wait_max
        if reserved_at:
            # Its turn has come: it is at the head of the host's queue, and the slot it waits for is ending now.
            # A short wait here is cheaper than going round the broker again (a few ms of CPU) and blocks nobody.
            deadline = max(deadline, started + TURN_WAIT_MAX)
        while True:
            token, wait, turn = self.try_acquire(host, reserved_at)
            if token is not None:
                break
            reserved_at = turn or reserved_at
            if time.monotonic() + wait > deadline:
                metrics.HOST_BUSY.labels(kind=kind).inc()
                raise HostBusy(host, wait, reserved_at)
            time.sleep(wait)
        metrics.HOST_WAIT_SECONDS.labels(kind=kind).observe(time.monotonic() - started)
        try:
            yield
        finally:
            self.release(host, token)

    def honour_retry_after(self, url: str, *, status: int | None, retry_after: float | None, scope: str,
                           kind: str) -> bool:
        """A 429/503 with Retry-After pauses the whole host when the scope says so. Returns whether it did."""
        if scope != "host" or retry_after is None or status not in RETRY_AFTER_STATUSES:
            return False
        host = host_of(url)
        if not host:
            return False
        seconds = self.pause(host, retry_after)
        metrics.HOST_PAUSES.labels(kind=kind).inc()
        log.warning("host_paused", host=host, seconds=round(seconds, 1), status=status, kind=kind)
        return True


def retry_after_scope(settings: Settings, override: str | None) -> str:
    """A feed's own ``retry_after_scope`` wins over the global setting."""
    return override or settings.retry_after_scope

