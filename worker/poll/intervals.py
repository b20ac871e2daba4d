"""When to poll a feed next: pure arithmetic on its publishing history and the server's signals (no I/O).

The interval follows how often the feed really publishes (the mean gap between its recent new entries),
backs off while it is quiet, stays within a floor and a ceiling, and is stretched (never shortened below the
floor) by what the server asks for: RSS ``<ttl>``, ``<skipHours>``/``<skipDays>``, ``Cache-Control: max-age``
or ``Expires``, and ``Retry-After``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MAX_SERVER_DELAY = 7 * 86400.0  # the longest a server signal (ttl, max-age, Retry-After) may park a feed
HISTORY = 20  # new-entry times remembered per feed; enough for a stable mean, small enough to follow changes
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class Bounds:
    floor: float
    ceiling: float


def bounds(global_min: float, global_max: float, feed_min: float | None, feed_max: float | None) -> Bounds:
    """A feed's own bounds narrow the global ones; they never widen them (the global floor protects hosts)."""
    floor = max(global_min, feed_min or 0.0)
    ceiling = min(global_max, feed_max or global_max)
    return Bounds(floor, max(floor, ceiling))


def entry_times(published: Iterable[float | None], *, last_poll: float | None, now: float) -> list[float]:
    """When the new entries of one poll appeared. A feed's date is trusted only inside the window in which
    the entry can have appeared (after the previous poll, not in the future); on a first poll the dates are
    the only history there is, so they are kept as given (but not in the future), and undated entries say
    nothing (they were not all published just now)."""
    times = []
    for t in published:
        if t is None and last_poll is None:
            continue
        if t is None:
            t = now
        if last_poll is not None:
            t = max(t, last_poll)
        times.append(min(t, now))
    return times


def remember(history: Sequence[float], new: Sequence[float]) -> list[float]:
    return sorted([*history, *new])[-HISTORY:]


def adaptive_interval(history: Sequence[float], *, now: float, default: float, limits: Bounds) -> float:
    """The mean gap between the remembered new entries, or half the time since the last one when the feed
    has gone quiet for longer (so a dead feed drifts to the ceiling and a revived one is found again)."""
    if len(history) >= 2:
        span = history[-1] - history[0]
        interval = span / (len(history) - 1)
    else:
        interval = default
    if history:
        interval = max(interval, (now - history[-1]) / 2)
    return min(max(interval, limits.floor), limits.ceiling)


def server_delay(*signals: float | None, cap: float) -> float:
    """The longest wait any server signal asks for, capped so a typo (ttl of a year) cannot lose a feed."""
    return min(max((s for s in signals if s and s > 0), default=0.0), cap)


def backoff(errors: int, *, base: float, ceiling: float) -> float:
    """Exponential in the number of consecutive errors, capped; failing feeds keep being retried."""
    return min(ceiling, base * 2.0 ** max(0, errors - 1))


def jittered(delay: float, fraction: float, rng: random.Random | None = None) -> float:
    """Spread by +-fraction so feeds added together (or failing together) do not stay in lockstep."""
    if fraction <= 0:
        return delay
    return delay * (rng or random).uniform(1 - fraction, 1 + fraction)


def skip_allowed(when: float, skip_hours: frozenset[int], skip_days: frozenset[str]) -> float:
    """Move ``when`` (epoch seconds) forward to the first hour (UTC, as RSS 2.0 says) that the feed's
    skipHours and skipDays do not exclude; unchanged when the feed excludes nothing, or everything."""
    if not skip_hours and not skip_days:
        return when
    t = datetime.fromtimestamp(when, UTC)
    for _ in range(24 * 8):
        if t.hour not in skip_hours and DAYS[t.weekday()] not in skip_days:
            return t.timestamp()
        t = (t + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    return when
