"""The evaluation on a small subset of the shared pages (skipped where they are absent): ours >= baseline."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import redis

from worker.clean.rules import exact_hash
from worker.cli.evaluate import (
    Group,
    Page,
    Prepared,
    Score,
    evaluate_groups,
    fleet_memory,
    learn,
    load_groups,
    prepare,
    prf,
    repeated_left,
)
from worker.cli.evaluate_holdout import run_cold, run_holdout
from worker.extract.page import Extracted


def _totals(groups: list, client: redis.Redis) -> dict[str, Score]:  # type: ignore[type-arg]
    totals: dict[str, Score] = {}
    for _, scores in evaluate_groups(groups, client):
        for system, score in scores.items():
            totals.setdefault(system, Score()).add(score)
    return totals


def test_scoring_helpers() -> None:
    assert prf("a b c", "a b c") == (1.0, 1.0, 1.0)
    p, r, _ = prf("A b x", "a b c d")
    assert (round(p, 3), r) == (0.667, 0.5)
    outputs = ["menu\nx", "menu\ny", "menu\nz"]
    assert repeated_left(outputs, ["x", "y", "z"]) == 3
    assert repeated_left(outputs, ["menu\nx", "menu", "z"]) == 1


def test_big9_subset_ours_beats_baseline(shared_eval: Path, redis_client: redis.Redis) -> None:
    groups = [g for g in load_groups(shared_eval / "big9") if g.name in ("2005/nypost", "2017/bbc")]
    assert len(groups) == 2
    totals = _totals(groups, redis_client)
    base, ours = totals["trafilatura"].means(), totals["ours"].means()
    assert ours[2] >= base[2]
    assert ours[1] >= base[1] - 0.005
    assert totals["ours"].repeated_left <= 0.2 * totals["trafilatura"].repeated_left
    assert totals["ours"].lines_lost <= 1
    assert not list(redis_client.scan_iter(match="*eval-*"))  # the eval deletes its own keys


def test_aeb_subset_no_harm(shared_eval: Path, redis_client: redis.Redis) -> None:
    groups = load_groups(shared_eval / "aeb")[:15]
    totals = _totals(groups, redis_client)
    assert totals["ours"].means()[2] >= totals["trafilatura"].means()[2]
    assert totals["ours"].lines_lost == 0


def _subset(shared_eval: Path, pages: int = 4) -> list[tuple[Group, list[Prepared]]]:
    groups = [g for g in load_groups(shared_eval / "big9") if g.source in ("bbc", "nypost")]
    return prepare([replace(g, pages=g.pages[:pages]) for g in groups])


def test_holdout_and_cold_on_a_big9_subset(shared_eval: Path, redis_client: redis.Redis) -> None:
    prepared = _subset(shared_eval)
    assert sorted({g.period for g, _ in prepared}) == ["2005", "2013", "2017"]
    out = run_holdout(prepared, redis_client)
    rows = [line.split() for line in out.splitlines() if line[:4] in ("2005", "2013", "2017")]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (p, s, "8") for p in ("2005", "2013", "2017") for s in ("trafilatura", "ours")]
    assert "thresholds chosen without 2005:" in out and "WORST period=" in out
    for _, system, _, _, recall, f1, *_ in rows:
        if system == "ours":
            assert float(f1) > 0.9 and float(recall) > 0.9
    cold = run_cold(prepared, redis_client, by_period=True)
    assert "COLD pages=6 " in cold
    # every site memory and fleet prior of the protocols is the run's own and deleted after
    assert not list(redis_client.scan_iter(match="*eval*")) and not list(redis_client.scan_iter(match="*fleet*"))


def test_learning_a_held_out_site_leaves_the_fleet_prior_as_it_is(redis_client: redis.Redis) -> None:
    pages = [Prepared(Page(f"p{i}", None, b"", ""), "", "", Extracted(
        title=None, author=None, date=None, language=None, sitename=None, description=None,
        text=f"Paragraph {i} of an article that goes on for long enough to be prose in every sense.\nShare this"),
        {}) for i in range(3)]
    memory = fleet_memory(redis_client, "fleet-eval-test")
    assert learn(memory, "held.example", pages, share=False) == [exact_hash("share this")]
    assert not list(redis_client.scan_iter(match="*fleet-eval-test*"))
    assert learn(memory, "dev.example", pages) == [exact_hash("share this")]
    assert list(redis_client.scan_iter(match="*fleet-eval-test*"))


def test_eval_command_refuses_a_holdout_without_periods(shared_eval: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "worker.cli", "eval", str(shared_eval / "aeb"), "--holdout",
                           "period"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [f"error: --holdout period: {shared_eval / 'aeb'} has no periods "
                                                "(use ../shared/eval/big9)"]
