"""When to poll next, as pure arithmetic: bounds, the times new entries appeared, the adaptive interval, server
signals, backoff, jitter and skipHours/skipDays. No Redis, no server: exact values and their edges."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from worker.poll.intervals import (
    DAYS,
    HISTORY,
    Bounds,
    adaptive_interval,
    backoff,
    bounds,
    entry_times,
    jittered,
    remember,
    server_delay,
    skip_allowed,
)

LIMITS = Bounds(60.0, 86400.0)


def at(text: str) -> float:
    """Epoch seconds of an ISO date-time in UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


# --- bounds ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("feed_min", "feed_max", "expected"), [
    (None, None, Bounds(60.0, 86400.0)),
    (300.0, None, Bounds(300.0, 86400.0)),  # a feed's floor narrows the global one
    (10.0, None, Bounds(60.0, 86400.0)),  # ...but never widens it
    (None, 3600.0, Bounds(60.0, 3600.0)),
    (None, 999999.0, Bounds(60.0, 86400.0)),
    (7200.0, 3600.0, Bounds(7200.0, 7200.0)),  # crossed: the floor wins
    (0.0, 0.0, Bounds(60.0, 86400.0)),  # zero means unset
])
def test_bounds(feed_min: float | None, feed_max: float | None, expected: Bounds) -> None:
    assert bounds(60.0, 86400.0, feed_min, feed_max) == expected


# --- entry times ----------------------------------------------------------------------------------------------


def test_first_poll_keeps_the_feeds_dates_but_not_the_future_and_not_undated_entries() -> None:
    assert entry_times([100.0, None, 5000.0, 900.0], last_poll=None, now=1000.0) == [100.0, 1000.0, 900.0]


def test_later_polls_clamp_dates_into_the_window_since_the_previous_poll() -> None:
    times = entry_times([100.0, None, 5000.0, 900.0, 500.0], last_poll=500.0, now=1000.0)
    assert times == [500.0, 1000.0, 1000.0, 900.0, 500.0]  # back-dated, undated (now), future, inside, edge


def test_no_entries_no_times() -> None:
    assert entry_times([], last_poll=None, now=1.0) == []
    assert entry_times([None], last_poll=None, now=1.0) == []


# --- history and the adaptive interval ------------------------------------------------------------------------


def test_remember_keeps_the_latest_history_sorted() -> None:
    assert remember([5.0, 1.0], [3.0]) == [1.0, 3.0, 5.0]
    kept = remember([float(i) for i in range(HISTORY)], [100.0, 50.5])
    assert len(kept) == HISTORY == 20
    assert kept[0] == 2.0 and kept[-2:] == [50.5, 100.0]


def test_interval_is_the_mean_gap_between_entries() -> None:
    history = [0.0, 600.0, 1200.0, 2100.0]  # gaps 600, 600, 900: mean 700
    assert adaptive_interval(history, now=2100.0, default=900.0, limits=LIMITS) == 700.0
    assert adaptive_interval([0.0, 300.0], now=300.0, default=900.0, limits=LIMITS) == 300.0


def test_without_history_the_default_applies() -> None:
    assert adaptive_interval([], now=1e9, default=900.0, limits=LIMITS) == 900.0
    # one entry: no gap yet, the default, unless the feed has been quiet for longer than twice that
    assert adaptive_interval([1000.0], now=1000.0, default=900.0, limits=LIMITS) == 900.0
    assert adaptive_interval([1000.0], now=4000.0, default=900.0, limits=LIMITS) == 1500.0


def test_a_quiet_feed_backs_off_by_half_its_silence() -> None:
    history = [0.0, 600.0]  # a 600 s rhythm...
    assert adaptive_interval(history, now=1800.0, default=900.0, limits=LIMITS) == 600.0  # silence 1200: /2 = 600
    assert adaptive_interval(history, now=2400.0, default=900.0, limits=LIMITS) == 900.0  # ...then 1800 / 2


def test_interval_stays_within_the_bounds() -> None:
    assert adaptive_interval([0.0, 1.0], now=1.0, default=900.0, limits=LIMITS) == 60.0
    assert adaptive_interval([0.0, 1e6], now=1e6, default=900.0, limits=LIMITS) == 86400.0
    assert adaptive_interval([0.0], now=1e7, default=900.0, limits=Bounds(60.0, 3600.0)) == 3600.0
    assert adaptive_interval([], now=0.0, default=10.0, limits=LIMITS) == 60.0


# --- server signals, backoff, jitter --------------------------------------------------------------------------


def test_server_delay_is_the_longest_signal_capped() -> None:
    assert server_delay(None, 0.0, -5.0, cap=100.0) == 0.0
    assert server_delay(30.0, None, 45.5, cap=100.0) == 45.5
    assert server_delay(30.0, 500.0, cap=100.0) == 100.0
    assert server_delay(cap=100.0) == 0.0
    assert server_delay(100.0, cap=100.0) == 100.0


@pytest.mark.parametrize(("errors", "expected"), [(0, 60.0), (1, 60.0), (2, 120.0), (3, 240.0), (7, 3840.0),
                                                   (8, 3900.0), (50, 3900.0)])
def test_backoff_doubles_per_error_up_to_the_ceiling(errors: int, expected: float) -> None:
    assert backoff(errors, base=60.0, ceiling=3900.0) == expected


def test_jitter_spreads_within_the_fraction() -> None:
    rng = random.Random(3)
    values = [jittered(1000.0, 0.1, rng) for _ in range(2000)]
    assert all(900.0 <= v <= 1100.0 for v in values)
    assert min(values) < 910.0 and max(values) > 1090.0  # the whole range is used, both ways
    assert jittered(1000.0, 0.1, random.Random(3)) == 1000.0 * random.Random(3).uniform(0.9, 1.1)


def test_no_jitter_leaves_the_delay_alone() -> None:
    assert jittered(1000.0, 0.0) == 1000.0
    assert jittered(1000.0, -0.2) == 1000.0


def test_jitter_without_an_rng_uses_the_module_random() -> None:
    random.seed(11)
    expected = 500.0 * random.Random(11).uniform(0.5, 1.5)
    assert jittered(500.0, 0.5) == expected


# --- skipHours / skipDays -------------------------------------------------------------------------------------


def test_nothing_skipped_or_everything_skipped_leaves_the_time() -> None:
    when = at("2026-03-04T10:17:05")
    assert skip_allowed(when, frozenset(), frozenset()) == when
    assert skip_allowed(when, frozenset(range(24)), frozenset()) == when
    assert skip_allowed(when, frozenset(), frozenset(DAYS)) == when


def test_an_allowed_hour_is_kept_as_it_is() -> None:
    when = at("2026-03-04T10:17:05")  # a Wednesday
    assert skip_allowed(when, frozenset({9, 11}), frozenset({"tuesday"})) == when


def test_skipped_hours_move_to_the_start_of_the_next_allowed_hour() -> None:
    when = at("2026-03-04T10:17:05")
    assert skip_allowed(when, frozenset({10, 11, 12}), frozenset()) == at("2026-03-04T13:00:00")
    # across midnight
    late = at("2026-03-04T22:30:00")
    assert skip_allowed(late, frozenset({22, 23, 0, 1}), frozenset()) == at("2026-03-05T02:00:00")


def test_skipped_days_move_to_the_next_allowed_day() -> None:
    wednesday = at("2026-03-04T10:17:05")
    assert DAYS[datetime.fromtimestamp(wednesday, UTC).weekday()] == "wednesday"
    assert skip_allowed(wednesday, frozenset(), frozenset({"wednesday", "thursday"})) == at("2026-03-06T00:00:00")
    sunday = at("2026-03-08T23:00:00")
    assert skip_allowed(sunday, frozenset(), frozenset({"sunday"})) == at("2026-03-09T00:00:00")  # monday


def test_skipped_hours_and_days_together() -> None:
    friday_night = at("2026-03-06T21:00:00")
    skips = skip_allowed(friday_night, frozenset(range(0, 8)) | {21, 22, 23}, frozenset({"saturday"}))
    assert skips == at("2026-03-08T08:00:00")  # not friday 21-23, not saturday, not sunday before 8


def test_the_last_hour_of_the_search_window_is_still_found() -> None:
    # Every hour of every day but one: the only allowed hour is almost a week ahead.
    when = at("2026-03-04T10:00:00")  # wednesday
    days = frozenset(d for d in DAYS if d != "tuesday")
    assert skip_allowed(when, frozenset(h for h in range(24) if h != 9), days) == at("2026-03-10T09:00:00")


def test_the_mean_gap_does_not_depend_on_when_the_history_starts() -> None:
    history = [1_000_000.0, 1_000_600.0, 1_001_200.0]
    assert adaptive_interval(history, now=1_001_200.0, default=900.0, limits=LIMITS) == 600.0


def test_a_zero_global_floor_stays_zero() -> None:
    assert bounds(0.0, 100.0, None, None) == Bounds(0.0, 100.0)


def test_short_server_signals_count_too() -> None:
    assert server_delay(0.5, None, cap=100.0) == 0.5


def test_a_skipped_hour_moves_to_the_exact_start_of_the_next_one() -> None:
    when = at("2026-03-04T10:17:05") + 0.25  # a fraction of a second too
    assert skip_allowed(when, frozenset({10}), frozenset()) == at("2026-03-04T11:00:00")


def test_skip_hours_are_utc_whatever_the_machines_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        when = at("2026-03-04T10:17:05")
        assert skip_allowed(when, frozenset({10, 11}), frozenset()) == at("2026-03-04T12:00:00")
        assert skip_allowed(when, frozenset(), frozenset({"wednesday"})) == at("2026-03-05T00:00:00")
    finally:
        monkeypatch.undo()
        time.tzset()
