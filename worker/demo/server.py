"""A real local HTTP server (tests, the demo, benchmarks): serves a mutable route table of fixture feeds and pages.

A route is either a ``Response`` (static bytes plus headers) or a callable taking the request handler, for
faults (slow drips, resets, redirect loops, never-ending bodies). Conditional GET is honoured for ``Response``
routes that carry an ETag or Last-Modified, so 304s are real.
"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Response:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


Route = Response | Callable[[BaseHTTPRequestHandler], None]


def quietly(route: Callable[[BaseHTTPRequestHandler], None]) -> Callable[[BaseHTTPRequestHandler], None]:
    """Wrap a fault route whose client hangs up on purpose (timeouts, kills): the server thread just stops
    answering instead of spraying tracebacks."""

    def run(handler: BaseHTTPRequestHandler) -> None:
        try:
            route(handler)
        except OSError:
            handler.close_connection = True
            handler.wfile = io.BytesIO()

    return run


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes; with Nagle on, the body waits ~40 ms for a delayed ACK
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path
        self.server.hits[path] = self.server.hits.get(path, 0) + 1
        # Like a real site, ignore query parameters a route does not name (tracking tags on feed links).
        route = self.server.routes.get(path) or self.server.routes.get(path.split("?", 1)[0])
        if route is None:
            self._send(Response(b"not found", "text/plain", 404))
        elif isinstance(route, Response):
            self._send(route)
        else:
            route(self)

    def _send(self, resp: Response) -> None:
        etag = resp.headers.get("ETag")
        lastmod = resp.headers.get("Last-Modified")
        if (etag and self.headers.get("If-None-Match") == etag) or (
            lastmod and self.headers.get("If-Modified-Since") == lastmod
        ):
            self.send_response(304)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for key, value in resp.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(resp.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Route]
    hits: dict[str, int]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client closing its keep-alive connection (a worker shutting down) is normal; anything else is
        # still printed.
        if not isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            super().handle_error(request, client_address)


class LocalServer:
    """``with LocalServer() as srv: srv.routes["/feed.xml"] = Response(...); srv.url("/feed.xml")``"""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.httpd = _Server((host, 0), _Handler)
        self.httpd.routes = {}
        self.httpd.hits = {}
        self.host = host
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def routes(self) -> dict[str, Route]:
        return self.httpd.routes

    @property
    def hits(self) -> dict[str, int]:
        return self.httpd.hits

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def start(self) -> LocalServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
