"""Shared fixtures: a real Redis (the configured one, or a throwaway server) and a real local HTTP server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from worker.demo.server import LocalServer
from worker.redisconn import RedisServer

SHARED_EVAL = Path(__file__).resolve().parent.parent.parent / "shared" / "eval"
DEFAULT_TEST_REDIS = "redis://127.0.0.1:6379/15"

# The suite serves its fixtures from 127.0.0.1, which the SSRF guard refuses by default.
os.environ.setdefault("INGEST_ALLOW_PRIVATE_NETWORKS", "true")


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """REDIS_URL if it answers (CI: the machine's server, db 15), else a throwaway redis-server."""
    url = os.environ.get("TEST_REDIS_URL") or os.environ.get("REDIS_URL") or DEFAULT_TEST_REDIS
    if _answers(url):
        yield url
        return
    server = RedisServer()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on a clean database: flushed before and after each test."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    with LocalServer() as server:
        yield server


@pytest.fixture(scope="session")
def shared_eval() -> Path:
    if not SHARED_EVAL.is_dir():
        pytest.skip(f"evaluation pages not found at {SHARED_EVAL} (only present in the development workplace)")
    return SHARED_EVAL
