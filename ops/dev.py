#!/usr/bin/env python3
"""Set up the virtual environment and run the project: `python3 ops/dev.py run|test|test-cluster|demo|lint|lock`.

Needs only Python 3.11+: creates .venv, installs the pinned, hash-checked dependencies of
``requirements.lock`` (with the dev and embedded extras) and the package itself without dependencies (again
whenever the lock or pyproject.toml changes), then runs the command inside it. Re-lock after changing the
dependencies in pyproject.toml: `python3 ops/dev.py lock`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("INGEST_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


# What the set-up installs: every dependency pinned with its hashes (development: the dev and embedded extras;
# production, the Dockerfile: neither). Both are written by `python3 ops/dev.py lock`.
LOCK = ROOT / "requirements.lock"
PROD_LOCK = ROOT / "requirements-prod.lock"
# The lock tool itself, pinned so that a re-lock resolves the same way on every machine.
PIP_TOOLS = "pip-tools==7.6.2"


def setup() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script may be started by an older python3
        sys.exit(f"Python 3.11+ is required (this is {sys.version.split()[0]})")
    stamp = VENV / ".installed"
    want = hashlib.sha256(LOCK.read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want and PY.exists():
        return
    if not PY.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # exactly what CI tested: every package at its pinned version, each file checked against its hash
    subprocess.check_call([*pip, "--require-hashes", "-r", str(LOCK)])
    # the project itself, editable; its build backend (setuptools, wheel) comes from the lock too
    subprocess.check_call([*pip, "--no-deps", "--no-build-isolation", "-e", str(ROOT)])
    stamp.write_text(want)


def lock() -> int:
    """Re-resolve both lock files from pyproject.toml (newest versions its ranges allow), with hashes."""
    tools = ROOT / ".venv-lock"  # the lock tool in a venv of its own, apart from what it pins
    if not (tools / "bin" / "pip-compile").exists():
        venv.EnvBuilder(with_pip=True).create(tools)
        subprocess.check_call([str(tools / "bin" / "python"), "-m", "pip", "install", "--quiet", PIP_TOOLS])
    compile_ = [str(tools / "bin" / "pip-compile"), "--quiet", "--generate-hashes", "--allow-unsafe",
                "--all-build-deps", "--strip-extras", "--no-emit-index-url", "--no-emit-find-links", "--upgrade",
                "pyproject.toml"]
    env = os.environ | {"CUSTOM_COMPILE_COMMAND": "python3 ops/dev.py lock"}
    for out, extras in ((LOCK, ["--extra", "dev", "--extra", "embedded"]), (PROD_LOCK, [])):
        code = subprocess.call([*compile_, *extras, "--output-file", str(out.relative_to(ROOT))], cwd=ROOT, env=env)
        if code:
            return code
    return 0


def sh(*args: str, env: dict[str, str] | None = None) -> int:
    proc = subprocess.Popen(list(args), cwd=ROOT, env=os.environ | env if env else None)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # the command got the same Ctrl-C and shuts down in its own time
            continue


def cluster_tests(*args: str) -> int:
    """The pipeline, kill -9 and same-story tests with the state on a Redis Cluster the suite starts (three
    nodes) and the broker on the test Redis: `python3 ops/dev.py test-cluster [pytest args]`."""
    return sh(str(PY), "-m", "pytest", "-m", "cluster", *args, env={"TEST_REDIS_CLUSTER": "1"})


def main() -> int:
    cmd, rest = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("test", [])
    if cmd == "lock":
        return lock()
    setup()
    if cmd == "run":
        return sh(str(BIN / "ingest"), "run", *rest)
    if cmd == "demo":
        return sh(str(BIN / "ingest"), "run", "--demo", *rest)
    if cmd == "lint":
        return sh(str(BIN / "ruff"), "check", "worker", "tests", "ops") or sh(str(BIN / "mypy"))
    if cmd == "test":
        return (
            sh(str(BIN / "ruff"), "check", "worker", "tests", "ops")
            or sh(str(BIN / "mypy"))
            or sh(str(PY), "-m", "pytest", *rest)
            # the tests marked `cluster` again, with the state on a local three-node Redis Cluster (whole runs only)
            or (0 if rest else cluster_tests())
        )
    if cmd == "test-cluster":
        return cluster_tests(*rest)
    if cmd == "setup":
        return 0
    sys.exit(f"unknown command {cmd!r}: use run, demo, test, test-cluster, lint, setup or lock")


if __name__ == "__main__":
    sys.exit(main())
