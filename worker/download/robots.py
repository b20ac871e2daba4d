"""robots.txt for article pages: fetched once per origin through the guarded ``fetch``, cached in Redis for the
whole fleet, parsed with Protego (Scrapy's RFC 9309 parser), and read as RFC 9309 says: 2xx gives the rules,
4xx allows everything, 5xx or a network failure disallows everything for a short while and is then retried.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import redis
import structlog
from protego import Protego

from worker import metrics
from worker.core.keys import digest, key, site_part
from worker.core.settings import Settings, get_settings
from worker.net.fetch import Clients, FetchError, fetch
from worker.net.politeness import HostBusy, Politeness, host_of

log = structlog.get_logger("worker.download.robots")

UNAVAILABLE_SECONDS = 120.0  # an unreachable robots.txt means "disallow all" for this long, then a new try
LOCK_MARGIN = 5.0  # the fetch lock outlives one download by this much
CACHE_POLL = 0.1  # seconds between looks at the cache while another worker fetches the file
PARSED_MAX = 256  # parsed robots.txt files kept per process
# A worker re-reads an origin's entry from Redis at most this often (never past the entry's own expiry): one
# Redis round trip and a transfer of the whole file saved on most pages.
LOCAL_SECONDS = 60.0

Decision = Literal["allowed", "disallowed", "unavailable"]
State = Literal["rules", "allow_all", "unavailable"]
# Fetch failures that say the file is unusable rather than unreachable: parsed as nothing, i.e. allow all.
_UNUSABLE = frozenset({"content_type", "too_large", "decompression_bomb"})


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    crawl_delay: float | None = None


def product_token(settings: Settings) -> str:
    """The name matched against ``User-agent:`` lines: ``robots_user_agent``, else the product part of the
    User-Agent ("news-ingest-worker/0.1 (+url)" -> "news-ingest-worker")."""
    if settings.robots_user_agent.strip():
        return settings.robots_user_agent.strip()
    first = settings.user_agent.strip().split()
    return first[0].split("/")[0] if first else "*"


def robots_url(url: str) -> str:
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.rsplit('@', 1)[-1].lower()}/robots.txt"


def state_for(exc: FetchError) -> State:
    """RFC 9309 §2.3.1: 4xx means no rules; 5xx and network trouble mean "assume complete disallow"."""
    if exc.status is not None and 400 <= exc.status < 500:
        return "allow_all"
    if exc.reason in _UNUSABLE:
        return "allow_all"
    return "unavailable"


class Robots:
    """``Robots(r, settings, http, polite).check(url)`` -> Verdict."""

    def __init__(self, r: redis.Redis, settings: Settings | None, clients: Clients, polite: Politeness) -> None:
        self.r = r
        self.settings = settings or get_settings()
        self.clients = clients
        self.polite = polite
        self.token = product_token(self.settings)
        self._parsed: dict[str, Protego] = {}
        self._local: dict[str, tuple[float, State, Protego | None]] = {}  # origin -> (until, state, rules)

    def check(self, url: str, *, reserved_at: float = 0.0) -> Verdict:
        """May raise HostBusy (the host's slots are taken, or another worker is still fetching the file). A page
        back at its host's turn (``reserved_at``) fetches the file with that turn, ahead of newcomers: without
        it, a host whose queue keeps filling would never let the file through."""
        state, parser = self._rules(url, reserved_at)
        if state == "unavailable":
            return Verdict("unavailable")
        if state == "allow_all" or parser is None:
            return Verdict("allowed")
        delay = parser.crawl_delay(self.token)
        allowed = parser.can_fetch(url, self.token)
        return Verdict("allowed" if allowed else "disallowed", float(delay) if delay else None)

    def _rules(self, url: str, reserved_at: float = 0.0) -> tuple[State, Protego | None]:
        """The origin's state and parsed rules: from this process's copy while the fleet's cache entry lives
        (at most ``LOCAL_SECONDS``), else from Redis, fetching the file when nobody has."""
        origin = robots_url(url)
        now = time.monotonic()
        local = self._local.get(origin)
        if local is not None and local[0] > now:
            return local[1], local[2]
        cache = key("robots", site_part(host_of(url)), digest(origin))
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(cache)
        pipe.pttl(cache)
        raw, ttl_ms = pipe.execute()
        if not raw:
            raw = self._refresh(origin, url, cache, reserved_at)
            ttl_ms = self._ttl_ms(raw[b"state"].decode())
        state: State = raw[b"state"].decode()
        parser = self._parser(raw[b"body"]) if state == "rules" else None
        if state != "unavailable" and ttl_ms > 0:  # an unavailable file is re-read each time: it is retried soon
            if len(self._local) >= PARSED_MAX:
                self._local.clear()
            self._local[origin] = (now + min(LOCAL_SECONDS, ttl_ms / 1000), state, parser)
        return state, parser

    def _ttl_ms(self, state: str) -> int:
        ttl = self.settings.robots_cache_seconds
        return max(int((min(ttl, UNAVAILABLE_SECONDS) if state == "unavailable" else ttl) * 1000), 1)

    def _parser(self, body: bytes) -> Protego:
        sig = digest(body.decode("utf-8", "replace"))
        parser = self._parsed.get(sig)
        if parser is None:
            if len(self._parsed) >= PARSED_MAX:
                self._parsed.clear()
            parser = self._parsed[sig] = Protego.parse(body.decode("utf-8", "replace"))
        return parser

    def _refresh(self, origin: str, url: str, cache: str, reserved_at: float = 0.0) -> dict[bytes, bytes]:
        """Fetch the file once for the fleet: one worker takes a lock and fetches; the others watch the cache
        for at most ``host_wait_max`` and then put their page off (HostBusy), so nobody fetches it twice."""
        lock = cache + ":lock"
        lock_ms = int((self.settings.total_timeout + LOCK_MARGIN) * 1000)
        if not self.r.set(lock, "1", nx=True, px=lock_ms):
            deadline = time.monotonic() + self.settings.host_wait_max
            while time.monotonic() < deadline:
                time.sleep(CACHE_POLL)
                raw: dict[bytes, bytes] = self.r.hgetall(cache)
                if raw:
                    return raw
            raise HostBusy(host_of(url), 1.0, reserved_at)  # a page keeps its place in the host's queue
        try:
            state, body = self._download(origin, reserved_at)
            ttl_ms = self._ttl_ms(state)
            fields = {b"state": state.encode(), b"body": body}
            pipe = self.r.pipeline(transaction=False)
            pipe.hset(cache, mapping=fields)  # type: ignore[arg-type]
            pipe.pexpire(cache, ttl_ms)
            pipe.execute()
            if state == "rules":
                delay = self._parser(body).crawl_delay(self.token)
                self.polite.set_crawl_delay(host_of(url), float(delay) if delay else None, ttl_ms / 1000)
            return fields
        finally:
            self.r.delete(lock)

    def _download(self, origin: str, reserved_at: float = 0.0) -> tuple[State, bytes]:
        try:
            with self.polite.slot(origin, kind="robots", reserved_at=reserved_at):
                resp = fetch(origin, kind="robots", settings=self.settings, client=self.clients.for_url(origin))
        except FetchError as exc:
            state = state_for(exc)
            metrics.ROBOTS_FETCHES.labels(result=state).inc()
            # unreachable holds the host's pages back, worth a warning; a 404 is the common, normal case
            emit = log.warning if state == "unavailable" else log.info
            emit("robots_fetched", robots_url=origin, state=state, reason=exc.reason, error=str(exc))
            return state, b""
        metrics.ROBOTS_FETCHES.labels(result="rules").inc()
        log.info("robots_fetched", robots_url=origin, state="rules", bytes=len(resp.body))
        return "rules", resp.body
