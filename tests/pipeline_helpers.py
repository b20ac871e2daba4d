"""Helpers for end-to-end tests: register feeds, send polls to the real worker, wait for the run to finish,
read what was published."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any

import redis

from worker.core import runs
from worker.demo.server import LocalServer, Response, quietly
from worker.feeds.feedlist import Feed
from worker.poll.schedule import Schedule


def poll_and_wait(r: redis.Redis, feeds: list[Feed], timeout: float = 60) -> dict[str, int]:
    """Poll ``feeds`` once on the running worker and wait until every task they fanned out is done."""
    from worker.tasks import poll_feed

    Schedule(r).sync(feeds)
    run_id = uuid.uuid4().hex[:12]
    runs.start(r, run_id, [f.id for f in feeds])
    for feed in feeds:
        poll_feed.apply_async((feed.id, run_id), queue="poll")
    deadline = time.monotonic() + timeout
    while runs.pending(r, run_id) > 0:
        assert time.monotonic() < deadline, f"run not finished: {runs.totals(r, run_id)}"
        time.sleep(0.1)
    return runs.totals(r, run_id)


def published(r: redis.Redis, stream: str = "articles") -> list[dict[str, Any]]:
    return [json.loads(fields[b"data"]) for _, fields in r.xrange(stream)]


def slow_page(server: LocalServer, path: str, seconds: float = 3.0) -> threading.Event:
    """Make ``path`` answer its usual response after ``seconds``; the event is set when a download starts, so a
    test can kill or stop a worker while it is in the middle of the fetch."""
    original = server.routes[path]
    assert isinstance(original, Response)
    started = threading.Event()

    def route(handler: BaseHTTPRequestHandler) -> None:
        started.set()
        time.sleep(seconds)
        handler.send_response(original.status)
        handler.send_header("Content-Type", original.content_type)
        handler.send_header("Content-Length", str(len(original.body)))
        handler.end_headers()
        handler.wfile.write(original.body)

    server.routes[path] = quietly(route)  # the worker may be killed meanwhile
    return started
