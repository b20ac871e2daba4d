"""The one-round-trip pipeline, on a private real Redis (its command statistics and script cache are its own)."""

from __future__ import annotations

import pytest
import redis

from tests.e2e.test_faults import private_redis
from worker.core.redisconn import OneTrip

__all__ = ["private_redis"]  # the fixture, imported for this module's tests

BUMP = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


def calls(r: redis.Redis, command: str) -> int:
    return int(r.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_scripts_in_a_one_trip_pipeline_cost_no_script_exists(private_redis: tuple[redis.Redis, str]) -> None:
    r, _ = private_redis
    bump = r.register_script(BUMP)
    bump(keys=["n"], args=[1])  # the server knows the script
    for _ in range(3):
        pipe = OneTrip(r)
        bump(keys=["n"], args=[10], client=pipe)
        pipe.incr("other")
        assert pipe.execute() == [int(r.get("n") or 0), int(r.get("other") or 0)]
    assert calls(r, "script|exists") == 0
    assert int(r.get("n") or 0) == 31


def test_a_script_the_server_lost_runs_once_again_on_its_own(private_redis: tuple[redis.Redis, str]) -> None:
    r, _ = private_redis
    bump = r.register_script(BUMP)
    bump(keys=["n"], args=[1])
    r.script_flush()
    pipe = OneTrip(r)
    pipe.incr("before")
    bump(keys=["n"], args=[10], client=pipe)
    pipe.incr("after")
    assert pipe.execute() == [1, 11, 1]
    assert int(r.get("n") or 0) == 11  # ran exactly once
    assert r.script_exists(bump.sha) == [True]


def test_other_errors_still_raise(private_redis: tuple[redis.Redis, str]) -> None:
    r, _ = private_redis
    r.set("text", "x")
    pipe = OneTrip(r)
    pipe.incr("text")
    pipe.incr("n")
    with pytest.raises(redis.ResponseError):
        pipe.execute()
    assert int(r.get("n") or 0) == 1  # not a transaction: the rest ran


def test_every_download_thread_gets_a_connection_at_once(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A download worker runs INGEST_DOWNLOAD_CONCURRENCY threads that may all talk to Redis at the same moment:
    none may fail for want of a connection (redis-py 8's default pool raised "Too many connections" at 100)."""
    import threading

    from worker.core.redisconn import get_redis
    from worker.core.settings import get_settings

    threads_n = 150
    monkeypatch.setenv("INGEST_DOWNLOAD_CONCURRENCY", str(threads_n))
    get_settings.cache_clear()
    r = get_redis()
    start = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def hold_one() -> None:
        start.wait()
        try:
            r.blpop(["ingest:test:never"], timeout=0.5)  # holds its connection for the whole wait
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    workers = [threading.Thread(target=hold_one) for _ in range(threads_n)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    get_settings.cache_clear()
    assert errors == []
