"""``celery -A tests.e2e.crash_app worker``: the worker's own app, plus a crash at one chosen point, once.

``CRASH_AT`` names the point: ``<prerun|postrun>:<task name>``. There the worker's whole process group is
SIGKILLed, as ``kill -9`` of a machine's worker would: nothing gets to acknowledge, re-queue or clean up.
``postrun`` falls after the task's body (its writes are done: a page handed on, an article on its stream)
and before Celery acknowledges the message (``task_acks_late``). ``CRASH_FLAG`` is a file created at the
crash, so a restarted worker does not crash again.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from celery import signals

from worker.app import app
from worker.tasks import ctx  # noqa: F401 - registers the tasks

__all__ = ["app"]

_WHEN, _, _TASK = os.environ.get("CRASH_AT", "").partition(":")
_FLAG = os.environ.get("CRASH_FLAG", "")


def _crash(sender: Any = None, **_: Any) -> None:
    if getattr(sender, "name", None) != _TASK or not _FLAG:
        return
    try:
        os.close(os.open(_FLAG, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os.killpg(os.getpgid(0), signal.SIGKILL)


if _WHEN == "prerun":
    signals.task_prerun.connect(_crash, weak=False)
elif _WHEN == "postrun":
    signals.task_postrun.connect(_crash, weak=False)
