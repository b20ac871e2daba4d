"""The exceptions that cross stage boundaries, so every layer can raise and catch them without importing a
stage."""

from __future__ import annotations


class RetryLater(Exception):
    """A transient failure (timeout, 5xx): the task should be retried; carries the server's wish if any.
    ``counted`` False (a busy host: nothing failed) asks for a retry that does not use up an attempt, at the
    turn the host reserved (``reserved_at``)."""

    def __init__(self, reason: str, countdown: float | None = None, *, counted: bool = True,
                 reserved_at: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.countdown = countdown
        self.counted = counted
        self.reserved_at = reserved_at


class MissingDependency(Exception):
    """Something the command needs is not installed; the message names what to install or set instead."""
