"""What several ``ingest`` sub-commands share: the ``--feeds`` option, a Redis connection that is known to
answer, the Celery command line, and whether to draw live progress."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import redis
import typer

from worker.cli.errors import USAGE, CliError
from worker.core.settings import get_settings

FeedsOpt = Annotated[Path | None, typer.Option("--feeds", help="feeds YAML file (default: INGEST_FEEDS)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def use_feeds(path: Path | None) -> Path:
    """The feed list to use: ``--feeds`` when given (and passed on to child processes), else ``INGEST_FEEDS``."""
    if path is not None:
        os.environ["INGEST_FEEDS"] = str(path.resolve())
        get_settings.cache_clear()
    return get_settings().feeds


def checked_redis_url() -> str:
    """The Redis URL to use, checked to be one (parsed, not connected): Celery would take ``localhost:6379``
    for a RabbitMQ address and retry it forever. Starts the embedded Redis when ``REDIS_URL`` is unset."""
    from redis.connection import parse_url

    from worker.core.redisconn import redis_url

    url = redis_url(get_settings())
    try:
        parse_url(url)
    except ValueError as exc:
        raise CliError(f"REDIS_URL is not a Redis URL ({exc}): write redis://[:password@]host:port/db", USAGE) \
            from exc
    return url


def connect() -> redis.Redis:
    """The configured Redis, checked to answer: a command must fail with a message, not run on (or quietly read
    nothing from) a Redis it cannot reach."""
    from worker.core import logs
    from worker.core.redisconn import get_redis

    checked_redis_url()
    logs.configure(get_settings())
    r = get_redis()
    r.ping()
    return r


def connect_broker() -> redis.Redis:
    """The Celery broker's Redis (queue lengths), checked to answer; an unreachable one is reported under its
    own setting, ``INGEST_BROKER_URL``, not as the state store."""
    from worker.cli.errors import broker_problem
    from worker.core.redisconn import broker_url

    url = broker_url(get_settings())
    try:
        r = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
        r.ping()
    except (redis.RedisError, ValueError) as exc:
        raise broker_problem(exc) from exc
    return r


def celery_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "worker.app", *args]


def interactive(as_json: bool = False) -> bool:
    """Live progress only for a person at a terminal: piped or with ``--json``, a command prints its result."""
    return not as_json and sys.stdout.isatty() and sys.stderr.isatty()
