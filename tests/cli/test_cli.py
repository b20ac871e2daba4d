"""The scriptable interface, run as scripts run it: `ingest run --once --feeds`, `ingest tail`, `ingest feeds`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import redis

from worker.demo.server import LocalServer
from worker.demo.site import build_site
from worker.feeds.feedlist import Feed, load_feeds, save_feeds


def ingest(*args: str, timeout: float = 180, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=os.environ | (env or {}))


def test_run_once_then_tail(redis_client: redis.Redis, http_server: LocalServer, tmp_path: Path) -> None:
    site = build_site(http_server.url(""), n_articles=5, seed=3)
    http_server.routes.update(site.routes)
    feeds = tmp_path / "feeds.yaml"
    save_feeds(feeds, [Feed(url=http_server.url(site.feed_path), name="cli")])
    done = ingest("run", "--once", "--feeds", str(feeds))
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["finished"] and summary["counts"].get("published:articles") == 5, summary

    tail = ingest("tail", "articles", "--from-start", "--no-follow", "--json", timeout=60)
    assert tail.returncode == 0, tail.stderr[-2000:]
    lines = [json.loads(line) for line in tail.stdout.splitlines()]
    assert sorted(a["title"] for a in lines) == sorted(a.title for a in site.articles)

    again = json.loads(ingest("run", "--once", "--feeds", str(feeds)).stdout)
    assert again["counts"].get("polled:not_modified") == 1 and "published:articles" not in again["counts"]


def test_feeds_add_list_remove(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    save_feeds(path, [])
    assert ingest("feeds", "add", "http://example.com/a.xml", "--feeds", str(path), "--tag", "x",
                  "--interval", "60").returncode == 0
    assert load_feeds(path) == [Feed(url="http://example.com/a.xml", tags=("x",), interval=60)]
    listed = ingest("feeds", "list", "--feeds", str(path), "--json")
    assert json.loads(listed.stdout)["url"] == "http://example.com/a.xml"
    assert ingest("feeds", "add", "ftp://example.com/x", "--feeds", str(path)).returncode != 0
    assert ingest("feeds", "remove", "http://example.com/a.xml", "--feeds", str(path)).returncode == 0
    assert load_feeds(path) == []
    assert ingest("feeds", "remove", "http://example.com/a.xml", "--feeds", str(path)).returncode == 1


def test_stats_prints_queues_and_totals(redis_client: redis.Redis) -> None:
    out = ingest("stats", "--json", timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)
    assert set(data["queues"]) == {"poll", "fetch", "extract", "publish"} and "feeds_due" in data


def test_run_demo_publishes_the_sample_site(redis_client: redis.Redis) -> None:
    out = ingest("run", "--demo", timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("\n=== ") == 12
    summary = json.loads(out.stdout[out.stdout.rindex("\n{") :])
    assert summary["finished"] and summary["counts"]["published:articles"] == 12
    assert "WeChat" not in out.stdout and "Last updated" not in out.stdout


def test_run_on_the_embedded_redis_stops_cleanly_on_ctrl_c(http_server: LocalServer, tmp_path: Path) -> None:
    """README command 1: `ingest run` with REDIS_URL unset starts a private Redis, polls, and a Ctrl-C (SIGINT
    to the whole foreground process group, as a terminal sends it) ends it all with a warm shutdown."""
    site = build_site(http_server.url(""), n_articles=3, seed=11)
    http_server.routes.update(site.routes)
    feeds = tmp_path / "feeds.yaml"
    save_feeds(feeds, [Feed(url=http_server.url(site.feed_path), name="local")])
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | {
        "INGEST_FEEDS": str(feeds), "INGEST_LOG_FORMAT": "json", "INGEST_CONCURRENCY": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "run"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:  # until the feed's articles are published on the private Redis
            lines.append(raw.decode(errors="replace"))
            if sum('"event": "published"' in line for line in lines) == 3:
                break
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = "".join(lines) + rest.decode(errors="replace")
    assert proc.returncode == 1, output[-3000:]  # Celery's exit status after a Ctrl-C (0 after SIGTERM)
    assert "Warm shutdown" in output and "Traceback" not in output, output[-3000:]
    leftover = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert leftover == [], f"processes left in the session: {leftover}"
