"""Serve the generated demo site on localhost: ``serve_demo()`` for code, ``python -m worker.demo.serve`` by hand.

From the command line it prints one feed URL per line (the first line is all a script needs to read) and
serves until Ctrl-C; ``--add-every SECONDS`` publishes a new article periodically, so a running ingest sees
its feed change (new ETag) and picks the entry up.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from worker.demo.server import LocalServer
from worker.demo.site import DemoSite, add_article, build_many, build_site


def _server(host: str, port: int) -> LocalServer:
    """A ``LocalServer``; on ``port`` when one is asked for (``LocalServer`` itself always binds port 0)."""
    server = LocalServer(host)
    if port:
        # Rebind on the requested port with the same handler and the same (shared) route and hit tables.
        old = server.httpd
        new = type(old)((host, port), old.RequestHandlerClass)
        new.routes, new.hits = old.routes, old.hits
        old.server_close()
        server.httpd, server.port = new, port
        server.thread = threading.Thread(target=new.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    return server


def serve_demo(host: str = "127.0.0.1", port: int = 0, *, n_articles: int = 12, seed: int = 0,
               language: str = "en") -> tuple[LocalServer, DemoSite]:
    """Start a server with a generated site mounted; the feed is at ``server.url(site.feed_path)``.

    The caller owns the server: ``server.stop()`` when done.
    """
    server = _server(host, port)
    site = build_site(server.url(""), n_articles=n_articles, seed=seed, language=language)
    server.routes.update(site.routes)
    server.start()
    return server, site


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted, printing the feed URL(s) first."""
    parser = argparse.ArgumentParser(prog="python -m worker.demo.serve", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--articles", type=int, default=12, help="articles per site")
    parser.add_argument("--sites", type=int, default=1, help="more than one serves /s0/feed.xml, /s1/...")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--language", default="en", choices=("en", "fr", "de"))
    parser.add_argument("--add-every", type=float, default=0.0, metavar="SECONDS",
                        help="publish a new article on each site every SECONDS (0: never)")
    args = parser.parse_args(argv)

    server = _server(args.host, args.port)
    if args.sites > 1:
        sites = build_many(server.url(""), args.sites, args.articles, args.seed, language=args.language)
    else:
        sites = [build_site(server.url(""), n_articles=args.articles, seed=args.seed, language=args.language)]
    for site in sites:
        server.routes.update(site.routes)
    server.start()
    for site in sites:
        print(server.url(site.feed_path), flush=True)
    print(f"serving {sum(len(s.articles) for s in sites)} articles on {server.url('/')}; Ctrl-C to stop",
          file=sys.stderr, flush=True)
    try:
        while True:
            if args.add_every > 0:
                time.sleep(args.add_every)
                for site in sites:
                    art = add_article(site, routes=server.routes)
                    print(f"added {server.url(site.article_path(art.slug))}", file=sys.stderr, flush=True)
            else:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
