"""``ingest websub serve``: the callback endpoint WebSub hubs verify subscriptions with and push to (the server
itself is ``worker.cli.websub_callback``)."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from worker.cli.common import connect, connect_broker
from worker.cli.errors import CliError
from worker.core.settings import get_settings

app = typer.Typer(help="Push (WebSub): the callback endpoint hubs deliver to.", no_args_is_help=True)


@app.command("serve")
def websub_serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "0.0.0.0",
    port: Annotated[int | None, typer.Option(help="port (default: INGEST_WEBSUB_PORT)")] = None,
) -> None:
    """Serve the WebSub callback (hub verification and signed deliveries), /healthz, /readyz and /metrics."""
    from worker.cli.websub_callback import start
    from worker.core.logs import get_logger
    from worker.poll import websub

    r = connect()
    connect_broker()  # each delivery is queued there
    settings = get_settings()
    log = get_logger("worker.poll.websub")
    if not websub.enabled(settings):
        # Still serve: hubs of earlier subscriptions get their 410, and the probes answer.
        log.error("websub_not_configured",
                  error="set INGEST_WEBSUB_CALLBACK_URL and INGEST_WEBSUB_SECRET to receive pushes")
    try:
        server = start(r, host, port, settings=settings)
    except OSError as exc:
        where = f"{host}:{settings.websub_port if port is None else port}"
        raise CliError(f"cannot listen on {where}: {exc.strerror or exc} (another server on that port? use --port "
                       "or INGEST_WEBSUB_PORT)") from exc
    log.info("websub_serving", host=host, port=server.server_port, callback=settings.websub_callback_url)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    stop.wait()
    server.shutdown()
    server.server_close()
