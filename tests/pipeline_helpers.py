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

from worker.context import Context
from worker.core import runs
from worker.core.messages import PageJob, PreparedArticle
from worker.demo.server import LocalServer, Response, quietly
from worker.download import handoff
from worker.download.step import download
from worker.extract.step import extract
from worker.feeds.feedlist import Feed
from worker.poll.schedule import Schedule


def start_run(r: redis.Redis, feeds: list[Feed]) -> str:
    """Register ``feeds`` and send one poll each to the running workers, in a run of their own; its id."""
    from worker.tasks import poll_feed

    Schedule(r).sync(feeds)
    run_id = uuid.uuid4().hex[:12]
    runs.start(r, run_id, [f.id for f in feeds])
    for feed in feeds:
        poll_feed.apply_async((feed.id, run_id), queue="poll")
    return run_id


def poll_and_wait(r: redis.Redis, feeds: list[Feed], timeout: float = 60) -> dict[str, int]:
    """Poll ``feeds`` once on the running worker and wait until every task they fanned out is done."""
    run_id = start_run(r, feeds)
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


def fetch_and_extract(ctx: Context, task: PageJob | dict[str, Any], *,
                      final_attempt: bool = True) -> PreparedArticle | None:
    """The download step, then the extract step on the page it handed over, in this process: the two tasks'
    chain without Celery. None when either dead-lettered the page."""
    job = task if isinstance(task, PageJob) else PageJob.model_validate(task)
    page = download(ctx, job, owner="test", final_attempt=final_attempt)
    if page is None:
        return None
    stored = handoff.load(ctx.r, job.article_id)
    assert stored is not None, "the download stage stored no page"
    return extract(ctx, page, stored)
