"""What the ``ingest`` command prints when something expected goes wrong: one line saying what is wrong and what
to do, and an exit code: 2 for a usage or configuration error (fix the command, the settings or a file), 1 for
a runtime failure (something the command needs failed; trying again later may work). A Python traceback only
with ``ingest --debug`` or ``INGEST_LOG_LEVEL=DEBUG``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from typing import Any

import redis

USAGE = 2  # the command, a setting or a file given to it is wrong
RUNTIME = 1  # something the command needs failed


class CliError(Exception):
    """An expected failure, reported as ``error: <message>`` and exit ``code``."""

    def __init__(self, message: str, code: int = RUNTIME) -> None:
        super().__init__(message)
        self.code = code


def redis_where() -> str:
    """The Redis the command tried, password hidden."""
    from worker.core.urls import redact_url

    url = os.environ.get("REDIS_URL")
    return redact_url(url) if url else "the embedded Redis"


def broker_where() -> str:
    """The broker Redis the command tried, password hidden: ``INGEST_BROKER_URL``, else the state Redis."""
    from worker.core.urls import redact_url

    url = os.environ.get("INGEST_BROKER_URL")
    return redact_url(url) if url else redis_where()


def _broker_setting() -> str:
    return "INGEST_BROKER_URL" if os.environ.get("INGEST_BROKER_URL") else "REDIS_URL (or INGEST_BROKER_URL)"


def broker_problem(exc: BaseException) -> CliError:
    """The broker Redis (Celery's queues) cannot be used: named by its own setting."""
    if isinstance(exc, ValueError):
        return CliError(f"INGEST_BROKER_URL is not a Redis URL ({exc}): write redis://[:password@]host:port/db", USAGE)
    if isinstance(exc, redis.AuthenticationError):
        return CliError(f"the broker Redis at {broker_where()} refused the credentials: check {_broker_setting()}",
                        USAGE)
    if isinstance(exc, redis.ConnectionError):
        return CliError(f"cannot reach the broker Redis at {broker_where()}: {_connection_problem(exc)} (is "
                        f"{_broker_setting()} right? is Redis running?)")
    return CliError(f"the broker Redis at {broker_where()} failed: {exc} (is {_broker_setting()} right?)")


def _connection_problem(exc: redis.ConnectionError) -> str:
    """``Error 111 connecting to 127.0.0.1:1. Connection refused.`` -> ``connection refused``."""
    text = str(exc).strip()
    found = re.search(r"connecting to \S+?\.\s+(.+?)\.?$", text)
    problem = (found.group(1) if found else text.rstrip(".")).lower() or type(exc).__name__
    return {"name or service not known": "unknown host name",
            "temporary failure in name resolution": "host name cannot be resolved now"}.get(problem, problem)


def _redis_problem(exc: redis.RedisError) -> CliError:
    where = redis_where()
    if isinstance(exc, redis.AuthenticationError):
        return CliError(f"Redis at {where} refused the credentials ({exc}): check the user and password in REDIS_URL",
                        USAGE)
    if isinstance(exc, redis.BusyLoadingError):
        return CliError(f"Redis at {where} is still loading its data: try again in a moment")
    if isinstance(exc, redis.TimeoutError):
        return CliError(f"Redis at {where} did not answer in time: is it overloaded, or is REDIS_URL right?")
    if isinstance(exc, redis.ConnectionError):
        return CliError(f"cannot reach Redis at {where}: {_connection_problem(exc)} (is REDIS_URL right? is Redis "
                        "running?)")
    if isinstance(exc, redis.ResponseError) and "DB index is out of range" in str(exc):
        return CliError(f"Redis at {where} has no such database: use a database number the server has in REDIS_URL",
                        USAGE)
    if isinstance(exc, redis.ReadOnlyError):
        return CliError(f"Redis at {where} is a read-only replica: point REDIS_URL at the primary", USAGE)
    return CliError(f"Redis at {where} refused a command: {exc}")


def explain(exc: BaseException) -> CliError | None:
    """The one-line report of an expected exception, or None for one that is a bug."""
    from worker.core.errors import MissingDependency
    from worker.core.settings import SettingsError
    from worker.feeds.feedlist import FeedListError

    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, MissingDependency):
        return CliError(str(exc), USAGE)
    if isinstance(exc, SettingsError):
        return CliError(f"{exc} (see the Configuration table in README.md)", USAGE)
    if isinstance(exc, FeedListError):
        return CliError(f"{exc} (fix the file, or give another with --feeds or INGEST_FEEDS)", USAGE)
    if isinstance(exc, redis.RedisError):
        return _redis_problem(exc)
    if isinstance(exc, redis.exceptions.RedisClusterException):
        return CliError(f"the Redis Cluster at {redis_where()} cannot be used: {exc} (is REDIS_URL a node of it? "
                        "is INGEST_REDIS_CLUSTER right?)")
    if type(exc).__module__.startswith("kombu") and "connect" in str(exc).lower():
        # Celery's broker client, sending tasks
        return CliError(f"cannot reach the broker Redis at {broker_where()} to send tasks: {exc} (is "
                        f"{_broker_setting()} right?)")
    if isinstance(exc, OSError) and exc.filename is not None:
        return CliError(f"{exc.filename}: {exc.strerror or exc}", USAGE)
    return None


def _debug_logging() -> bool:
    from worker.core.settings import get_settings

    try:
        level = get_settings().log_level
    except Exception:  # the settings are what is wrong: read the variable itself
        level = os.environ.get("INGEST_LOG_LEVEL", "")
    return level.upper() == "DEBUG"


def run(app: Callable[..., Any], args: list[str], *, debug: bool = False) -> None:
    """Run the typer ``app`` on ``args``; an exception that escapes a command becomes one line on stderr and
    ``SystemExit`` with its code (usage errors are typer's own: message and exit 2)."""
    try:
        app(args=args, prog_name="ingest")
    except Exception as exc:
        if debug or _debug_logging():
            raise
        problem = explain(exc) or CliError(
            f"unexpected {type(exc).__name__}: {exc} (a bug: `ingest --debug ...` shows where; please report it)")
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(problem.code) from None
