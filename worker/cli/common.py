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


def connect() -> redis.Redis:
    """The configured Redis, checked to answer: a command must fail with a message, not run on (or quietly read
    nothing from) a Redis it cannot reach. Starts the embedded Redis when ``REDIS_URL`` is unset."""
    from worker.core import logs
    from worker.core.redisconn import get_redis

    settings = get_settings()
    logs.configure(settings)
    try:
        r = get_redis(settings)
    except ValueError as exc:  # redis-py's verdict on a URL it cannot parse
        raise CliError(f"REDIS_URL is not a Redis URL ({exc}): write redis://[:password@]host:port/db", USAGE) \
            from exc
    r.ping()
    return r


def celery_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "worker.app", *args]


def interactive(as_json: bool = False) -> bool:
    """Live progress only for a person at a terminal: piped or with ``--json``, a command prints its result."""
    return not as_json and sys.stdout.isatty() and sys.stderr.isatty()
