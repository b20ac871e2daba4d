#!/usr/bin/env python3
"""Set up the virtual environment and run the project: `python3 ops/dev.py run|test|test-cluster|demo|lint`.

Needs only Python 3.11+: creates .venv, installs the package with its dev extras (again whenever
pyproject.toml changes), then runs the command inside it.
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


def setup() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script may be started by an older python3
        sys.exit(f"Python 3.11+ is required (this is {sys.version.split()[0]})")
    stamp = VENV / ".installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want and PY.exists():
        return
    if not PY.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.check_call([*pip, "--upgrade", "pip"])
    subprocess.check_call([*pip, "-e", f"{ROOT}[dev]"])
    stamp.write_text(want)


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
    sys.exit(f"unknown command {cmd!r}: use run, demo, test, test-cluster, lint or setup")


if __name__ == "__main__":
    sys.exit(main())
