"""Starting a machine's workers as child processes: one per stage (``worker.app.stages``), each with its own
metrics directory and port, stopped together; used by ``ingest run`` and ``ingest worker --stage all``."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from worker.app import Stage, stages
from worker.cli.common import celery_argv
from worker.core.settings import get_settings

# The user's own multiprocess directory, read before anything imports worker.metrics (which would set one).
_USER_MULTIPROC = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
PR_SET_PDEATHSIG = 1  # prctl(2)
STOP_GRACE = 60.0  # seconds a stage gets for its warm shutdown before it is killed


def stage_env(stage: Stage, index: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A stage's environment: its own Prometheus multiprocess directory (a worker clears its directory when it
    starts, so two must never share one) and, on one machine, its own metrics port (the next one up)."""
    env = dict(os.environ if base is None else base)
    if _USER_MULTIPROC:
        env["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(_USER_MULTIPROC, stage.name)
    else:
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the worker makes (and removes) a private one
    port = int(env.get("INGEST_METRICS_PORT", get_settings().metrics_port))
    if port > 0:
        env["INGEST_METRICS_PORT"] = str(port + index)
    return env


def start_stages(*, names: Sequence[str] = ("download", "extract"), node: str | None = None,
                 loglevel: str = "INFO", beat: bool = False, env: Mapping[str, str] | None = None,
                 new_session: bool = False, concurrency: Mapping[str, int] | None = None,
                 **popen: Any) -> list[subprocess.Popen[Any]]:
    """One Celery worker per stage; beat (when asked) rides with the first. ``node`` names the workers
    ``<stage>-<node>``; ``popen``: more of ``subprocess.Popen``'s arguments (their output)."""
    defined = stages()
    procs = []
    for index, name in enumerate(names):
        stage = defined[name]
        args = stage.celery_args(node=f"{name}-{node}" if node else None, loglevel=loglevel,
                                 concurrency=(concurrency or {}).get(name), beat=beat and index == 0)
        procs.append(subprocess.Popen(celery_argv(*args), env=stage_env(stage, index, env),
                                      start_new_session=new_session, preexec_fn=die_with_parent, **popen))
    return procs


def die_with_parent() -> None:
    """In the child, before exec: the kernel sends it SIGTERM (a warm shutdown) when this process dies, so a
    stage never outlives a killed ``ingest run`` and goes on taking work (Linux; elsewhere nothing is done)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop(procs: Sequence[subprocess.Popen[Any]], sig: int = signal.SIGTERM) -> None:
    """Warm shutdown of every stage (in-flight tasks finish or go back to the queue), then kill stragglers."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(sig)
    deadline = time.monotonic() + STOP_GRACE
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def supervise(procs: Sequence[subprocess.Popen[Any]]) -> int:
    """Run until a signal or until one stage exits; then stop them all. Returns the exit code: the first
    stage's own when it died on its own (1 if that was 0), else the stages' own codes after the shutdown (Celery
    exits 1 after a Ctrl-C, 0 after SIGTERM). SIGTERM/SIGINT are passed on once, so Celery's warm shutdown runs
    (a second Ctrl-C to Celery would mean a cold one)."""
    stopping: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if not stopping:
            stopping.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    while not stopping and all(proc.poll() is None for proc in procs):
        time.sleep(0.2)
    died = next((proc for proc in procs if proc.poll() is not None), None)
    stop(procs, stopping[0] if stopping else signal.SIGTERM)
    if died is not None and not stopping:
        return died.returncode or 1
    return next((proc.returncode for proc in procs if proc.returncode), 0)
