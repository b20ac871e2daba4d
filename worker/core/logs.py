"""structlog configuration: JSON lines in production, readable console output on a terminal."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from worker.core.settings import Settings, get_settings
from worker.core.urls import redact_url

_SECRET_KEYS = ("password", "redis_url", "broker_url", "authorization", "token", "secret")


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Never let a credential reach a log line: redact secret-looking keys and passwords inside URLs."""
    for key, value in list(event.items()):
        if any(s in key.lower() for s in _SECRET_KEYS):
            event[key] = redact_url(str(value)) if "url" in key.lower() else "***"
        elif isinstance(value, str) and "://" in value and "@" in value:
            event[key] = redact_url(value)
    return event


def configure(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    level = logging.getLevelName(settings.log_level.upper())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer]
        if fmt == "json"
        else [*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level if isinstance(level, int) else logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Celery and libraries log through stdlib logging: route it through the same renderer.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer])
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if isinstance(level, int) else logging.INFO)
    # trafilatura is left at the ERROR that worker.extract.page gives it (it warns for every page without text)
    for noisy in ("httpx", "httpcore", "htmldate", "courlan", "charset_normalizer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
