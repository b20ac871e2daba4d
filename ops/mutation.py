"""Mutation testing of the pure modules with mutmut: the share of small deliberate bugs (a ``<`` turned into
``<=``, a constant changed, a call dropped) that the module's own unit tests notice.

    .venv/bin/python ops/mutation.py                                   # every module of MODULES, in turn
    .venv/bin/python ops/mutation.py worker/poll/intervals.py          # one of them, with its tests from MODULES
    .venv/bin/python ops/mutation.py worker/x.py=tests/x/test_a.py,tests/x/test_b.py   # any module, these tests

Each module runs in a throwaway copy of the project (mutmut rewrites the code it mutates, in a ``mutants/``
folder of the copy), against only the tests named for it: fast unit tests, never the end-to-end ones. A test
file that needs Redis uses ``TEST_REDIS_URL`` like the suite. Slow and CPU-heavy (a minute or more a module,
``--max-children`` processes), so it is not part of ``.ci/run``; run it when a module or its tests change.

Prints, per module, the survivors (mutmut's diff of each, unless ``--quiet``) and the figures; the last line is
``mutation <module>=<killed %> ...``. A mutant counts as killed when a test failed or timed out with it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# module -> the unit tests that cover it. Add a module here with its tests when it is ready.
MODULES: dict[str, tuple[str, ...]] = {
    "worker/poll/intervals.py": ("tests/poll/test_intervals.py",),
    "worker/core/urls.py": ("tests/core/test_urls.py",),
    "worker/poll/parse.py": ("tests/poll/test_parse.py",),
    "worker/feeds/opml.py": ("tests/feeds/test_opml.py",),
    "worker/clean/rules.py": ("tests/clean/test_clean.py", "tests/clean/test_rules.py"),
    "worker/core/messages.py": ("tests/core/test_messages.py",),
}

DETECTED = {"killed", "timeout"}
_RESULT = re.compile(r"^\s*(\S+__mutmut_\d+):\s*(.+?)\s*$")


@dataclass
class Outcome:
    module: str
    statuses: dict[str, str] = field(default_factory=dict)  # mutant name -> mutmut's status

    @property
    def total(self) -> int:
        return len(self.statuses)

    @property
    def killed(self) -> int:
        return sum(status in DETECTED for status in self.statuses.values())

    @property
    def share(self) -> float:
        return 100.0 * self.killed / self.total if self.total else 0.0

    def survivors(self) -> list[str]:
        return sorted((n for n, s in self.statuses.items() if s not in DETECTED), key=_natural)


def _natural(name: str) -> tuple[str, int]:
    stem, _, number = name.rpartition("_")
    return stem, int(number) if number.isdigit() else 0


def parse_targets(args: list[str]) -> dict[str, tuple[str, ...]]:
    """``MODULE`` (tests from MODULES) or ``MODULE=TEST,TEST``; none given means every module of MODULES."""
    if not args:
        return dict(MODULES)
    targets: dict[str, tuple[str, ...]] = {}
    for arg in args:
        module, sep, tests = arg.partition("=")
        if sep:
            targets[module] = tuple(t for t in tests.split(",") if t)
        elif module in MODULES:
            targets[module] = MODULES[module]
        else:
            raise SystemExit(f"{module}: not in ops/mutation.py's MODULES; give its tests as {module}=TEST,TEST")
        for path in (module, *targets[module]):
            if not (ROOT / path).is_file():
                raise SystemExit(f"{path}: no such file under {ROOT}")
    return targets


def copy_project(into: Path, module: str, tests: tuple[str, ...]) -> None:
    """The package, the tests and pyproject.toml (pytest's settings), with mutmut told what to mutate and what
    to run in setup.cfg (pyproject.toml has no [tool.mutmut], so mutmut reads setup.cfg)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    shutil.copytree(ROOT / "worker", into / "worker", ignore=ignore)
    shutil.copytree(ROOT / "tests", into / "tests", ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", into / "pyproject.toml")
    (into / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths = worker\n"
        f"only_mutate = {module}\n"
        "pytest_add_cli_args_test_selection =\n" + "".join(f"    {t}\n" for t in tests)
        + "pytest_add_cli_args =\n    -p\n    no:cacheprovider\n    -q\n"
    )


def run_module(module: str, tests: tuple[str, ...], *, children: int, quiet: bool) -> Outcome:
    print(f"== {module}: mutating, tested by {', '.join(tests)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ingest-mutation-") as tmp:
        work = Path(tmp)
        copy_project(work, module, tests)
        env = os.environ | {"PYTHONDONTWRITEBYTECODE": "1"}
        mutmut = [sys.executable, "-m", "mutmut"]
        run = subprocess.run([*mutmut, "run", "--max-children", str(children)], cwd=work, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if run.returncode != 0:
            print(run.stdout[-4000:])
            raise SystemExit(f"mutmut run failed for {module} (exit {run.returncode})")
        listed = subprocess.run([*mutmut, "results", "--all", "true"], cwd=work, env=env,
                                capture_output=True, text=True, check=True)
        outcome = Outcome(module)
        for line in listed.stdout.splitlines():
            if m := _RESULT.match(line):
                outcome.statuses[m.group(1)] = m.group(2)
        for name in outcome.survivors():
            print(f"-- {name}: {outcome.statuses[name]}")
            if not quiet:
                shown = subprocess.run([*mutmut, "show", name], cwd=work, env=env, capture_output=True, text=True)
                print("\n".join(line for line in shown.stdout.splitlines()[1:] if line.strip()))
    print(f"== {module}: {outcome.killed} of {outcome.total} mutants killed ({outcome.share:.1f} %), "
          f"{len(outcome.survivors())} survived", flush=True)
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", metavar="MODULE[=TEST,...]")
    parser.add_argument("--max-children", type=int, default=1, help="mutants tested at once (default 1)")
    parser.add_argument("--quiet", action="store_true", help="list survivors without their diffs")
    args = parser.parse_args()
    outcomes = [run_module(module, tests, children=args.max_children, quiet=args.quiet)
                for module, tests in parse_targets(args.targets).items()]
    print()
    for o in outcomes:
        print(f"{o.module}: {o.killed}/{o.total} killed, {o.share:.1f} %")
    print("mutation " + " ".join(f"{Path(o.module).stem}={o.share:.1f}" for o in outcomes))


if __name__ == "__main__":
    main()
