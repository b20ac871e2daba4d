"""Shared fixtures: a real Redis (the configured one, or a throwaway server), a real local HTTP server, and a
real Celery worker process on that Redis.

The Redis URL is settled in ``pytest_configure``, before any test module imports ``worker.app`` (which reads
``REDIS_URL`` at import), so the suite never falls back to an embedded server by accident.

With ``TEST_REDIS_CLUSTER=1`` the state goes to a local three-node Redis Cluster the suite starts
(``tests/cluster.py``, ``INGEST_REDIS_CLUSTER=true``) and the broker stays on the test Redis
(``INGEST_BROKER_URL``): ``python3 ops/dev.py test`` runs the tests marked ``cluster`` that way a second time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.cluster import LocalCluster
from worker.core.redisconn import RedisServer, free_port
from worker.core.settings import LOCAL_UNLIMITED_ENV
from worker.demo.server import LocalServer

ROOT = Path(__file__).resolve().parent.parent
SHARED_EVAL = ROOT.parent / "shared" / "eval"
DEFAULT_TEST_REDIS = "redis://127.0.0.1:6379/15"

_throwaway: RedisServer | None = None
_cluster: LocalCluster | None = None
ON_CLUSTER = os.environ.get("TEST_REDIS_CLUSTER", "") not in ("", "0")


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def pytest_configure(config: pytest.Config) -> None:
    global _throwaway, _cluster
    url = os.environ.get("TEST_REDIS_URL") or DEFAULT_TEST_REDIS
    if not _answers(url):
        _throwaway = RedisServer()
        url = _throwaway.url
    os.environ["REDIS_URL"] = url
    if ON_CLUSTER:
        _cluster = LocalCluster()
        os.environ["INGEST_BROKER_URL"] = url  # kombu has no Cluster transport: the broker stays a plain Redis
        os.environ["REDIS_URL"] = _cluster.url
        os.environ["INGEST_REDIS_CLUSTER"] = "true"
    # The suite serves its fixtures from 127.0.0.1, which the SSRF guard refuses by default.
    os.environ["INGEST_ALLOW_PRIVATE_NETWORKS"] = "true"
    os.environ.setdefault("INGEST_METRICS_PORT", "0")
    os.environ.setdefault("INGEST_CLEAN_HOLD_SECONDS", "5")
    os.environ.setdefault("INGEST_MIN_INTERVAL", "1")  # tests pin short feed intervals
    os.environ.setdefault("INGEST_LOG_FORMAT", "json")
    # Every fixture is served by one host, 127.0.0.1: per-host politeness would only slow the suite down, and
    # fault servers that answer every path badly would make robots.txt the failure under test. The politeness
    # and robots tests set their own strict values.
    for name, value in LOCAL_UNLIMITED_ENV.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("INGEST_ROBOTS_OBEY", "false")
    # Push on for every worker the suite starts, pointing at a port kept free for tests/test_websub.py's
    # callback server (no other test's feed advertises a hub, so nothing else subscribes).
    os.environ.setdefault("INGEST_WEBSUB_SECRET", "test-websub-master-secret")
    os.environ.setdefault("INGEST_WEBSUB_CALLBACK_URL", f"http://127.0.0.1:{free_port()}")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _cluster is not None:
        _cluster.stop()
    if _throwaway is not None:
        _throwaway.stop()


def broker_url() -> str:
    """The broker's URL: the test Redis (the state's too, unless the state is on the cluster)."""
    return os.environ.get("INGEST_BROKER_URL") or os.environ["REDIS_URL"]


def state_client(url: str | None = None) -> redis.Redis:
    """A client of the state store: a cluster client on the cluster, else a plain one."""
    from worker.core.redisconn import state_client as make

    return make(url or os.environ["REDIS_URL"], cluster=ON_CLUSTER)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ["REDIS_URL"]


def clean_db(client: redis.Redis) -> None:
    """Delete everything but kombu's exchange bindings, which a running worker set up once and needs."""
    keys = [k for k in client.scan_iter(count=1000) if not k.startswith(b"_kombu.binding")]
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the test database (the state store: on the cluster, a cluster client), emptied before and
    after each test, and the broker's database with it when the broker is apart."""
    client = state_client(redis_url)
    broker = redis.Redis.from_url(broker_url()) if ON_CLUSTER else None
    for db in (client, broker):
        if db is not None:
            clean_db(db)
    yield client
    for db in (client, broker):
        if db is not None:
            clean_db(db)
            db.close()


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    with LocalServer() as server:
        yield server


@pytest.fixture(scope="session")
def shared_eval() -> Path:
    if not SHARED_EVAL.is_dir():
        pytest.skip(f"evaluation pages not found at {SHARED_EVAL} (only present in the development workplace)")
    return SHARED_EVAL


def start_worker(name: str, *, concurrency: int = 2, env: dict[str, str] | None = None,
                 stage: str = "extract", queues: str | None = None) -> subprocess.Popen[bytes]:
    """A real Celery worker process of one stage on the test Redis; returns once it answers a ping."""
    from worker.app import app, stages
    from worker.cli.supervise import die_with_parent

    log = open(ROOT / ".pytest_cache" / f"worker-{name}.log", "wb")  # noqa: SIM115 - lives as long as the worker
    args = stages()[stage].celery_args(node=f"{name}@%h", concurrency=concurrency)
    if queues is not None:
        args[args.index("-Q") + 1] = queues
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker.app", *args, "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=os.environ | (env or {}), stdout=log, stderr=subprocess.STDOUT,
        # a killed test run must not leave workers consuming the test broker's queues into the next run
        preexec_fn=die_with_parent,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker {name} exited with {proc.returncode}; see {log.name}")
        replies = app.control.ping(destination=[f"{name}@{os.uname().nodename}"], timeout=0.5)
        if replies:
            return proc
    proc.kill()
    raise RuntimeError(f"worker {name} did not answer a ping in 60 s; see {log.name}")


def start_stages(name: str, *, env: dict[str, str] | None = None, downloads: int = 16,
                 processes: int = 2) -> list[subprocess.Popen[bytes]]:
    """Both stages, as a machine runs them: a download worker (threads) and an extract worker (processes)."""
    return [start_worker(f"{name}-download", stage="download", concurrency=downloads, env=env),
            start_worker(f"{name}-extract", stage="extract", concurrency=processes, env=env)]


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def celery_worker() -> Iterator[list[subprocess.Popen[bytes]]]:
    (ROOT / ".pytest_cache").mkdir(exist_ok=True)
    procs = start_stages("pytest")
    yield procs
    for proc in procs:
        stop_worker(proc)
