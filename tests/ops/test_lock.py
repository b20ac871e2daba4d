"""The lock files: every dependency of pyproject.toml pinned with hashes, production without the dev tools and
the bundled redis-server, and the Docker image on the Python the tests run on."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
PROD_LOCK = ROOT / "requirements-prod.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def _project() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {"": project["dependencies"], **project["optional-dependencies"]}


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def _pins(path: Path) -> dict[str, str]:
    """Package -> pinned version; fails on an entry without a hash (pip --require-hashes would refuse it)."""
    pins: dict[str, str] = {}
    entries = re.split(r"\n(?=[A-Za-z0-9])", path.read_text())
    for entry in entries:
        match = PIN.match(entry)
        if match:
            assert "--hash=sha256:" in entry, f"{path.name}: {match.group(1)} has no hash"
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def test_the_dev_lock_pins_every_dependency_and_extra() -> None:
    pins = _pins(LOCK)
    groups = _project()
    missing = (_names(groups[""]) | _names(groups["dev"]) | _names(groups["embedded"])) - pins.keys()
    assert not missing, f"not in {LOCK.name}: {sorted(missing)}; re-lock with `python3 ops/dev.py lock`"
    # the build backend too: the set-up installs the package with --no-build-isolation
    assert {"setuptools", "wheel"} <= pins.keys()


def test_the_production_lock_has_the_runtime_only() -> None:
    pins = _pins(PROD_LOCK)
    groups = _project()
    missing = _names(groups[""]) - pins.keys()
    assert not missing, f"not in {PROD_LOCK.name}: {sorted(missing)}; re-lock with `python3 ops/dev.py lock`"
    extras_only = (_names(groups["dev"]) | _names(groups["embedded"])) - _names(groups[""])
    leaked = extras_only & pins.keys()
    assert not leaked, f"dev or embedded packages in the production lock: {sorted(leaked)}"
    assert {"setuptools", "wheel"} <= pins.keys()
    # where both pin a package, the same version: production runs what the tests ran
    dev = _pins(LOCK)
    assert {n: v for n, v in pins.items() if dev.get(n) != v} == {}


def test_the_image_installs_the_lock_on_the_tests_python() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    image = re.search(r"^FROM python:(\d+)\.(\d+)[.\d]*-slim", dockerfile, re.MULTILINE)
    assert image, "the Dockerfile's base image is not an official python one"
    assert (int(image.group(1)), int(image.group(2))) == sys.version_info[:2], (
        f"the image's Python {image.group(1)}.{image.group(2)} is not the one the tests run on "
        f"({sys.version_info.major}.{sys.version_info.minor})")
    for lock in (LOCK, PROD_LOCK):
        compiled = re.search(r"with Python (\d+)\.(\d+)", lock.read_text())
        assert compiled and (int(compiled.group(1)), int(compiled.group(2))) == sys.version_info[:2], lock.name
    assert "--require-hashes -r requirements-prod.lock" in dockerfile
    assert "pip install --no-deps" in dockerfile
