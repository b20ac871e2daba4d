"""The honest protocols of ``ingest eval``: leave one period out (``--holdout period``) and first pages (``--cold``).

``--holdout period`` (big9): for each period, the other two are the development periods. Their sites are
learnt (as batches, as in production) and teach the fleet-wide prior; the rules' thresholds are chosen from a
small grid (``GRID``) by mean F1 on the development pages. Then the prior is frozen, and each site of the
held-out period is learnt from its own pages and cleaned with the chosen thresholds: nothing learnt or tuned
has seen the period it is scored on. Printed: each period's figures and chosen thresholds, the worst of each
figure, and what each rule removed per period (lines, and how many of them are ground-truth lines).

``--cold``: each site's first page, alone in a fresh site memory, cleaned with only what the fleet-wide prior
learnt from the *other* sites (with ``--holdout period``: the other sites of the other periods). This is what
the first article of a new site gets when it cannot wait for its batch.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence

import redis

from worker.clean.fleet import FleetPrior
from worker.clean.memory import SiteMemory
from worker.clean.rules import CleanRules
from worker.cli.evaluate import (
    Group,
    Prepared,
    RuleTally,
    Score,
    clean_all,
    delete_fleet,
    delete_site,
    fleet_memory,
    learn,
    score,
)
from worker.core.settings import get_settings

SYSTEMS = ("trafilatura", "ours")
# The thresholds a held-out run may choose from: how much evidence a long line and a slot need. The code's
# defaults (CleanRules()) are what this choice gives on all three periods.
GRID = tuple(CleanRules(long_min_pages=long, slot_min_pages=slot) for long in (2, 3) for slot in (2, 3, 4))
HEADER = (
    f"{'period':<8} {'system':<12} {'pages':>5} {'precision':>9} {'recall':>7} {'f1':>7}"
    f" {'repeated':>9} {'removed':>8} {'lost':>6}"
)


def _row(name: str, system: str, s: Score, base: Score) -> str:
    """``removed``: the share of trafilatura's repeated lines that are gone ("-" for trafilatura itself, and
    where it left none, as on single first pages)."""
    p, r, f = s.means()
    removed = f"{1 - s.repeated_left / base.repeated_left:.1%}" if base.repeated_left and s is not base else "-"
    return (f"{name:<8} {system:<12} {len(s.prf):>5} {p:>9.3f} {r:>7.3f} {f:>7.3f}"
            f" {s.repeated_left:>9} {removed:>8} {s.lines_lost:>6}")


def _figures(scores: dict[str, Score]) -> tuple[float, float, float]:
    """F1 gain and recall change over trafilatura, and the share of its repeated lines removed."""
    _, r_base, f_base = scores["trafilatura"].means()
    _, r_ours, f_ours = scores["ours"].means()
    base_left = scores["trafilatura"].repeated_left
    removed = 1 - scores["ours"].repeated_left / base_left if base_left else 1.0
    return f_ours - f_base, r_ours - r_base, removed


def _knobs(rules: CleanRules) -> str:
    return f"long_min_pages={rules.long_min_pages} slot_min_pages={rules.slot_min_pages}"


def choose_rules(memory: SiteMemory, learnt: Sequence[tuple[str, list[Prepared]]]) -> CleanRules:
    """The grid's thresholds with the best mean F1 on the learnt (development) sites; a tie goes to the more
    cautious (the larger thresholds come last in ``GRID``)."""
    def mean_f1(rules: CleanRules) -> float:
        judge = SiteMemory(memory.r, memory.settings, clean_rules=rules, fleet=memory.fleet)
        f1s = []
        for site, pages in learnt:
            for result, p in zip(clean_all(judge, site, pages), pages, strict=True):
                f1s.append(score([result.text if result else ""], [p], 0.0).means()[2])
        return sum(f1s) / max(1, len(f1s))

    scored = [(round(mean_f1(rules), 6), i, rules) for i, rules in enumerate(GRID)]
    return max(scored, key=lambda t: t[:2])[2]


def chosen_on_all(prepared: Sequence[tuple[Group, list[Prepared]]], client: redis.Redis) -> CleanRules:
    """What the choice gives with every page as development page (what the code's defaults should be)."""
    run = uuid.uuid4().hex[:8]
    namespace = f"fleet-eval-{run}-all"
    memory = fleet_memory(client, namespace)
    learnt = [(f"{group.site}.all-{run}", pages) for group, pages in prepared]
    try:
        for site, pages in learnt:
            learn(memory, site, pages)
        return choose_rules(memory, learnt)
    finally:
        for site, _ in learnt:
            delete_site(client, site)
        delete_fleet(client, namespace)


def run_holdout(prepared: Sequence[tuple[Group, list[Prepared]]], client: redis.Redis) -> str:
    """Leave-one-period-out: per held-out period, the figures of both systems; then the worst period."""
    run = uuid.uuid4().hex[:8]
    periods = sorted({g.period for g, _ in prepared if g.period is not None})
    per_period: dict[str, dict[str, Score]] = {}
    tallies: dict[str, RuleTally] = {}
    chosen: dict[str, CleanRules] = {}
    for period in periods:
        namespace = f"fleet-eval-{run}-{period}"
        memory = fleet_memory(client, namespace)
        tally = tallies[period] = RuleTally()
        scores = per_period[period] = {system: Score() for system in SYSTEMS}
        learnt: list[tuple[str, list[Prepared]]] = []
        try:
            for group, pages in prepared:  # development periods: their sites teach the fleet-wide prior
                if group.period != period:
                    learnt.append((f"{group.site}.dev-{run}", pages))
                    learn(memory, *learnt[-1])
            rules = chosen[period] = choose_rules(memory, learnt)
            for site, _ in learnt:
                delete_site(client, site)
            held = SiteMemory(client, memory.settings, clean_rules=rules, fleet=memory.fleet)
            for group, pages in prepared:  # the held-out period, the prior frozen
                if group.period == period:
                    site = f"{group.site}.held-{run}"
                    try:
                        learn(held, site, pages, share=False)
                        results = clean_all(held, site, pages)
                    finally:
                        delete_site(client, site)
                    for result, p in zip(results, pages, strict=True):
                        tally.add(result, p.page.gold)
                    scores["trafilatura"].add(score([p.baseline for p in pages], pages, 0.0))
                    scores["ours"].add(score([r.text if r else "" for r in results], pages, 0.0))
        finally:
            for site, _ in learnt:
                delete_site(client, site)
            delete_fleet(client, namespace)

    out = ["leave-one-period-out (fleet prior learnt and thresholds chosen on the other two periods)", HEADER]
    for period in periods:
        for system in SYSTEMS:
            out.append(_row(period, system, per_period[period][system], per_period[period]["trafilatura"]))
    figures = {period: _figures(per_period[period]) for period in periods}
    worst = min(periods, key=lambda p: figures[p][0])
    gain, recall, removed = figures[worst]
    out += [
        "",
        *(f"thresholds chosen without {period}: {_knobs(chosen[period])}" for period in periods),
        f"thresholds chosen on all periods: {_knobs(chosen_on_all(prepared, client))}"
        f" (the code's defaults: {_knobs(CleanRules())})",
        "",
        f"WORST period={worst} (smallest F1 gain): f1_gain={gain:+.4f} recall_change={recall:+.4f}"
        f" repeated_removed={removed:.1%}",
        f"WORST of each figure: f1_gain={min(f[0] for f in figures.values()):+.4f}"
        f" recall_change={min(f[1] for f in figures.values()):+.4f}"
        f" repeated_removed={min(f[2] for f in figures.values()):.1%}",
        "",
        "lines removed by each rule, per held-out period:",
    ]
    for period in periods:
        out += [f" {period}", *tallies[period].lines()]
    return "\n".join(out)


def run_cold(prepared: Sequence[tuple[Group, list[Prepared]]], client: redis.Redis, *, by_period: bool) -> str:
    """Each site's first page cleaned with the fleet-wide prior of the other sites only."""
    run = uuid.uuid4().hex[:8]
    settings = get_settings()
    # What every site would share: learnt once, in its own site memory, shared with no prior yet.
    crossings: dict[str, list[bytes]] = {}
    scratch = fleet_memory(client, f"fleet-eval-{run}-scratch")
    for group, pages in prepared:
        site = f"{group.site}.learn-{run}"
        try:
            crossings[group.name] = learn(scratch, site, pages, share=False)
        finally:
            delete_site(client, site)

    scores: dict[str, dict[str, Score]] = defaultdict(lambda: {system: Score() for system in SYSTEMS})
    tally = RuleTally()
    for i, (group, pages) in enumerate(prepared):
        namespace = f"fleet-eval-{run}-cold-{i}"
        fleet = FleetPrior(client, settings, namespace=namespace)
        pipe = client.pipeline(transaction=False)
        for other, _ in prepared:
            if other.source != group.source and not (by_period and other.period == group.period):
                fleet.share(crossings[other.name], pipe=pipe)
        pipe.execute()
        memory = SiteMemory(client, settings, fleet=fleet)
        site = f"{group.site}.cold-{run}"
        first = pages[:1]
        try:
            learn(memory, site, first, share=False)
            results = clean_all(memory, site, first)
        finally:
            delete_site(client, site)
            delete_fleet(client, namespace)
        tally.add(results[0], first[0].page.gold)
        key = (group.period or "all") if by_period else "all"
        scores[key]["trafilatura"].add(score([first[0].baseline], first, 0.0))
        scores[key]["ours"].add(score([r.text if r else "" for r in results], first, 0.0))

    prior = "the other sites of the other periods" if by_period else "the other sites"
    out = [f"first page of each site, cleaned with only the fleet prior learnt from {prior} (--cold)", HEADER]
    for name in sorted(scores):
        for system in SYSTEMS:
            out.append(_row(name, system, scores[name][system], scores[name]["trafilatura"]))
    total = {system: Score() for system in SYSTEMS}
    for per in scores.values():
        for system in SYSTEMS:
            total[system].add(per[system])
    if len(scores) > 1:
        for system in SYSTEMS:
            out.append(_row("all", system, total[system], total["trafilatura"]))
    gain, recall, _ = _figures(total)
    worst = min(_figures(per)[0] for per in scores.values())
    out += ["", f"COLD pages={len(total['ours'].prf)} f1_gain={gain:+.4f} recall_change={recall:+.4f}"
                f" worst_f1_gain={worst:+.4f}",
            "lines removed by each rule:", *tally.lines()]
    return "\n".join(out)

