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
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import redis
import structlog

from worker import metrics
from worker.core.keys import key, site_part
from worker.core.settings import Settings, get_settings

log = structlog.get_logger("worker.net.politeness")

LEASE_MARGIN = 30.0  # seconds a slot outlives the longest download, so only a dead holder's slot expires
BUSY_POLL = 0.1  # seconds between tries while a host's slots are all taken (no release notification)
MIN_BUSY_WAIT = 1.0  # work put off for a busy host comes back no sooner than this
MAX_CRAWL_DELAY = 60.0  # a Crawl-delay above this would make a site unfetchable; it is capped
RETRY_AFTER_STATUSES = frozenset({429, 503})
_DEFAULT_PORTS = {"http": 80, "https": 443}

# KEYS: slots (zset token -> lease end), next allowed time, pause end, crawl delay
# ARGV: token, concurrency limit, seconds between requests (0: none), lease seconds, longest busy poll
# Returns {1, "0"} when granted, else {0, seconds to wait} (as strings: Lua numbers become integers).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local paused = tonumber(redis.call('GET', KEYS[3]) or '0')
if paused > now then return {0, tostring(paused - now)} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local limit = tonumber(ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= limit then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tostring(math.min(tonumber(ARGV[5]), tonumber(first[2]) - now))}
end
local interval = tonumber(ARGV[3])
local delay = tonumber(redis.call('GET', KEYS[4]) or '0')
if delay > interval then interval = delay end
if interval > 0 then
  local nxt = tonumber(redis.call('GET', KEYS[2]) or '0')
  if nxt > now then return {0, tostring(nxt - now)} end
  redis.call('SET', KEYS[2], tostring(now + interval), 'PX', math.ceil(interval * 1000) + 1000)
end
local lease = tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 1000) + 1000)
return {1, '0'}
"""

# KEYS: pause end. ARGV: seconds. A pause only ever extends; returns the seconds left.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local seconds = tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + seconds > cur then
  redis.call('SET', KEYS[1], tostring(now + seconds), 'PX', math.ceil(seconds * 1000) + 1000)
  return tostring(seconds)
end
return tostring(cur - now)
"""


class HostBusy(Exception):
    """The host stayed at its limit (or paused) for longer than ``host_wait_max``: try again in ``wait`` s."""

    def __init__(self, host: str, wait: float) -> None:
        super().__init__(f"{host} is busy, retry in {wait:.1f} s")
        self.host = host
        self.wait = wait


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
    part = site_part(host)
    return [key("host", part, "slots"), key("host", part, "next"), key("host", part, "pause"),
            key("host", part, "crawl-delay")]


class Politeness:
    """The fleet-wide limiter. ``with polite.slot(url, kind="page"): fetch(...)``."""

    def __init__(self, r: redis.Redis, settings: Settings | None = None, *, lease: float | None = None) -> None:
        self.r = r
        self.settings = settings or get_settings()
        # a slot outlives the longest download it can cover, so only a dead holder's slot ever expires
        self.lease = lease if lease is not None else self.settings.total_timeout + LEASE_MARGIN
        self._acquire = r.register_script(_ACQUIRE)
        self._pause = r.register_script(_PAUSE)

    def try_acquire(self, host: str) -> tuple[str | None, float]:
        """One atomic attempt: ``(token, 0)`` when granted, ``(None, seconds to wait)`` otherwise."""
        s = self.settings
        token = uuid.uuid4().hex
        interval = 1.0 / s.host_rate if s.host_rate > 0 else 0.0
        granted, wait = self._acquire(keys=_keys(host),
                                      args=[token, s.host_concurrency, interval, self.lease, BUSY_POLL])
        return (token, 0.0) if int(granted) == 1 else (None, max(float(wait), 0.001))

    def release(self, host: str, token: str) -> None:
        self.r.zrem(_keys(host)[0], token)

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
    def slot(self, url: str, *, kind: str) -> Iterator[None]:
        """Hold one of the host's slots around a request. Waits (sleeping what Redis says) at most
        ``host_wait_max`` seconds, then raises HostBusy so the caller puts the work off instead of holding a
        worker: one busy host must not stall the feeds and pages of the others."""
        host = host_of(url)
        if not host:
            yield
            return
        started = time.monotonic()
        deadline = started + self.settings.host_wait_max
        while True:
            token, wait = self.try_acquire(host)
            if token is not None:
                break
            now = time.monotonic()
            if now + wait > deadline:
                metrics.HOST_BUSY.labels(kind=kind).inc()
                raise HostBusy(host, max(wait, MIN_BUSY_WAIT))
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

