"""Waiting for a condition instead of sleeping for a guessed time: the suite's one way to let real processes,
servers and Redis expiries catch up. The deadline is generous on purpose; it only bounds a hang, it is never the
thing a test checks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEADLINE = 60.0  # seconds; a loaded 2-core machine running four suites at once still gets there well within


def wait_until(condition: Callable[[], T], what: str, *, timeout: float = DEADLINE, every: float = 0.05,
               details: Callable[[], object] | None = None) -> T:
    """Call ``condition`` until it returns something truthy and return that; fail the test naming ``what``
    (and ``details()``, when given) if it has not happened within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            extra = f": {details()}" if details is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
        time.sleep(every)
