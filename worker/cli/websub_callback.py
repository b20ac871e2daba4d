"""The WebSub callback endpoint (``ingest websub serve``): answers hubs' verification GETs and takes their
signed deliveries, handing each valid one to a Celery task; also serves /healthz, /readyz and /metrics.

A delivery is checked and queued, nothing more, so the hub gets its answer within milliseconds; parsing and
the fan-out happen in ``worker.tasks.receive_push`` on the ``poll`` queue.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import redis
import structlog
from prometheus_client.exposition import ThreadingWSGIServer

from worker import metrics
from worker.core.settings import Settings, get_settings
from worker.poll import websub
from worker.poll.schedule import Schedule

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = structlog.get_logger("worker.poll.websub")

_PATH = re.compile(r"/websub/([0-9a-f]{1,64})/?")
Enqueue = Callable[[str, bytes, str | None], None]


def enqueue_push(feed_id: str, body: bytes, content_type: str | None) -> None:
    """Hand a verified delivery to the workers (bytes travel base64-encoded in the JSON message)."""
    from worker.tasks import receive_push

    receive_push.apply_async((feed_id, base64.b64encode(body).decode("ascii"), content_type), queue="poll")


def make_app(r: redis.Redis, settings: Settings | None = None, enqueue: Enqueue = enqueue_push) -> WSGIApplication:
    settings = settings or get_settings()
    schedule = Schedule(r, settings)
    fallback = metrics.make_app(metrics.build_registry(), lambda: bool(r.ping()))

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        match = _PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match is None:
            return fallback(environ, start_response)
        feed_id = match.group(1)
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if method == "GET":
                params = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
                status, body = websub.verify_intent(r, feed_id, params)
                return _answer(start_response, status, body)
            if method == "POST":
                return _answer(start_response, *_deliver(environ, feed_id))
            return _answer(start_response, 405, "")
        except redis.RedisError as exc:
            # The hub retries a failed delivery or verification later: say so rather than pretend.
            log.error("websub_callback_unavailable", feed_id=feed_id, error=str(exc))
            return _answer(start_response, 503, "")

    def _deliver(environ: WSGIEnvironment, feed_id: str) -> tuple[int, str]:
        if schedule.feed(feed_id) is None:
            # Removed from the feed list (or never on it): 410 asks the hub to end the subscription.
            r.delete(websub.state_key(feed_id))
            return _outcome("unknown_feed", feed_id, 410)
        if not websub.enabled(settings):
            # Our configuration, not the hub's subscription, is wrong: make the hub retry rather than drop it.
            log.error("websub_not_configured", feed_id=feed_id)
            return _outcome("not_configured", feed_id, 503)
        if websub.load(r, feed_id) is None:
            return _outcome("unknown_feed", feed_id, 410)
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        if length < 0:
            return _outcome("too_large", feed_id, 411)  # without a length the body cannot be capped
        if length > settings.max_feed_bytes:
            return _outcome("too_large", feed_id, 413)
        body = environ["wsgi.input"].read(length)
        check = websub.verify_signature(websub.feed_secret(settings, feed_id), body,
                                        environ.get("HTTP_X_HUB_SIGNATURE"))
        if check != "ok":
            # The spec: acknowledge (2xx) but ignore, so a forger learns nothing and a hub does not retry.
            metrics.WEBSUB_DELIVERIES.labels(outcome=f"{check}_signature").inc()
            log.error("websub_delivery_rejected", feed_id=feed_id, signature=check, bytes=len(body))
            return 202, ""
        try:
            enqueue(feed_id, body, environ.get("CONTENT_TYPE") or None)
        except Exception as exc:  # broker down: a 5xx makes the hub deliver again later
            log.error("websub_enqueue_failed", feed_id=feed_id, error=repr(exc))
            return _outcome("enqueue_failed", feed_id, 503)
        return _outcome("accepted", feed_id, 202, bytes=len(body))

    return app


def _outcome(outcome: str, feed_id: str, status: int, **extra: Any) -> tuple[int, str]:
    metrics.WEBSUB_DELIVERIES.labels(outcome=outcome).inc()
    level = log.info if status < 300 else log.warning
    level("websub_delivery", feed_id=feed_id, outcome=outcome, status=status, **extra)
    return status, ""


_REASONS = {200: "OK", 202: "Accepted", 404: "Not Found", 405: "Method Not Allowed", 410: "Gone",
            411: "Length Required", 413: "Content Too Large", 503: "Service Unavailable"}


def _answer(start_response: StartResponse, status: int, body: str) -> list[bytes]:
    data = body.encode("utf-8")
    start_response(f"{status} {_REASONS.get(status, '')}".strip(),
                   [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]


class _QuietHandler(WSGIRequestHandler):
    """Outcomes are logged as structured events above; no access-log line on stderr per request."""

    timeout = 30  # seconds of socket silence before a slow (or hostile) client's thread is let go

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start(r: redis.Redis, host: str = "0.0.0.0", port: int | None = None, *,
          settings: Settings | None = None, enqueue: Enqueue = enqueue_push) -> WSGIServer:
    """Serve the callback in a daemon thread; ``server.shutdown(); server.server_close()`` stops it and
    ``server.server_port`` is the bound port (useful with ``port=0``)."""
    settings = settings or get_settings()
    chosen = settings.websub_port if port is None else port
    server = make_server(host, chosen, make_app(r, settings, enqueue), ThreadingWSGIServer,
                         handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="websub-callback", daemon=True).start()
    return server
