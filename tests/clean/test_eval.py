"""The evaluation on a small subset of the shared pages (skipped where they are absent): ours >= baseline."""

from __future__ import annotations

from pathlib import Path

import redis

from worker.cli.evaluate import Score, evaluate_groups, load_groups, prf, repeated_left


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
