"""``ingest stats``: feeds, queues and lifetime counts, read from Redis, for a person or a script."""

from __future__ import annotations

import json
from typing import Any

import typer

from worker.cli.common import JsonOpt, connect, connect_broker


def stats(as_json: JsonOpt = False) -> None:
    """Feeds due, queued tasks, published counts, duplicates and dead letters."""
    from worker.core import runs
    from worker.metrics import queue_depths
    from worker.poll.schedule import Schedule, config_key

    r = connect()
    broker = connect_broker()  # queue lengths are the broker's, which may be another Redis than the state's
    sched = Schedule(r)
    data: dict[str, Any] = {
        "feeds": int(r.hlen(config_key())),
        "feeds_due": sched.count_due(),
        "feeds_invalid": sched.problems(),
        "queues": {q: {"depth": d, "oldest_age_seconds": a} for q, (d, a) in queue_depths(broker).items()},
        "totals": runs.totals(r),
    }
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(f"feeds: {data['feeds']}  due now: {data['feeds_due']}")
    for problem in data["feeds_invalid"]:
        typer.echo(f"invalid, skipped: {problem}")
    for q, v in data["queues"].items():
        age = v["oldest_age_seconds"]
        typer.echo(f"queue {q:8} depth {v['depth']:6}  oldest {age:.1f}s" if age is not None
                   else f"queue {q:8} depth {v['depth']:6}")
    for k, v in data["totals"].items():
        typer.echo(f"{k:40} {v}")
