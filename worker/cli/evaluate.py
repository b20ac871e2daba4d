"""``ingest eval PATH``: extraction and site-level cleaning quality on an evaluation set with ground truth.

PATH is ``../shared/eval/big9`` (27 site+period groups of 10 pages sharing a template) or
``../shared/eval/aeb`` (at most 2 pages per site). Three systems are scored per group and in total:

- ``trafilatura``: ``trafilatura.extract(html)`` with default options (the README's baseline);
- ``traf-dedup``: the same with ``deduplicate=True``, one cache, pages fed in order;
- ``ours``: the pipeline's own code: ``extract_page`` for a batch, ``SiteMemory.observe`` for every page of
  the batch, then ``SiteMemory.clean`` for each, with a real Redis. Groups go in file order and each one's
  site memory shares with one fleet-wide prior (the run's own), as sites do in production.

``--holdout period`` and ``--cold`` are in ``worker.cli.evaluate_holdout``.

Scoring follows eval/README.md: bag of ``\\w+`` tokens lower-cased, precision/recall/F1 per page, then
averaged.
``repeated_left``: distinct lines of a page that appear on 3+ pages of its group and are not a ground-truth
line. ``lines_lost``: ground-truth lines that the baseline output contains and the system's output does not.
The last line of the report holds our totals.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import trafilatura
from trafilatura.deduplication import LRUCache
from trafilatura.settings import LRU_SIZE

from worker.clean.fleet import FleetPrior
from worker.clean.memory import SiteMemory
from worker.clean.rules import REASONS, CleanResult, normalise_line
from worker.core.keys import key, site_part
from worker.core.settings import get_settings
from worker.core.urls import site_of
from worker.extract.page import Extracted, extract_page

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
SYSTEMS = ("trafilatura", "traf-dedup", "ours")
_TOKEN = re.compile(r"\w+")
_WORD = re.compile(r"\w")


@dataclass(frozen=True, slots=True)
class Page:
    id: str
    url: str | None
    html: bytes
    gold: str


@dataclass(frozen=True, slots=True)
class Group:
    """Pages of one site (and period) fed as one batch."""

    name: str
    site: str
    pages: list[Page]
    source: str = ""  # the site without its period (big9: "bbc" for 2005/bbc), for leaving a site out
    period: str | None = None  # big9's capture period (2005, 2013, 2017)


@dataclass(slots=True)
class Score:
    """Per-page scores and line counts of one system over some pages."""

    prf: list[tuple[float, float, float]] = field(default_factory=list)
    repeated_left: int = 0
    lines_lost: int = 0
    seconds: float = 0.0

    def add(self, other: Score) -> None:
        self.prf += other.prf
        self.repeated_left += other.repeated_left
        self.lines_lost += other.lines_lost
        self.seconds += other.seconds

    def means(self) -> tuple[float, float, float]:
        if not self.prf:
            return (0.0, 0.0, 0.0)
        p, r, f = (statistics.fmean(c) for c in zip(*self.prf, strict=True))
        return p, r, f


def decode_text(raw: bytes) -> str:
    """Gold files are mostly UTF-8, some Windows-1252."""
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def tokens(text: str) -> Counter[str]:
    return Counter(t.lower() for t in _TOKEN.findall(text))


def prf(predicted: str, gold: str) -> tuple[float, float, float]:
    """Bag-of-words precision, recall and F1 of one page."""
    pred, ref = tokens(predicted), tokens(gold)
    common = sum((pred & ref).values())
    precision = common / sum(pred.values()) if pred else 0.0
    recall = common / sum(ref.values()) if ref else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if line.strip()]


def repeated_left(outputs: list[str], golds: list[str]) -> int:
    """Distinct lines per page, repeated on 3+ pages of the group, that are not a line of the page's truth."""
    per_page = [set(_lines(o)) for o in outputs]
    on_pages = Counter(line for lines in per_page for line in lines)
    left = 0
    for lines, gold in zip(per_page, golds, strict=True):
        gold_lines = set(_lines(gold))
        left += sum(1 for line in lines if on_pages[line] >= 3 and line not in gold_lines)
    return left


def lines_lost(output: str, baseline: str, gold: str) -> int:
    """Ground-truth lines (with a word) that the baseline output has and ``output`` lost."""
    have = normalise_line(" ".join(_lines(output)))
    base = normalise_line(" ".join(_lines(baseline)))
    lost = 0
    for line in _lines(gold):
        norm = normalise_line(line)
        if _WORD.search(norm) and norm in base and norm not in have:
            lost += 1
    return lost


# --- loading ------------------------------------------------------------------------------------------------


def load_groups(path: Path) -> list[Group]:
    """Groups of the big9 (manifest.json) or aeb (ground-truth.json) layout, pages in file order."""
    if (path / "manifest.json").is_file():
        return _load_big9(path)
    if (path / "ground-truth.json").is_file():
        return _load_aeb(path)
    raise FileNotFoundError(f"{path}: neither manifest.json (big9) nor ground-truth.json (aeb)")


def _load_big9(path: Path) -> list[Group]:
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    groups: dict[tuple[str, str], list[Page]] = {}
    for entry in manifest:
        page = Page(
            id=entry["html"],
            url=entry.get("canonical_url"),
            html=gzip.decompress((path / entry["html"]).read_bytes()),
            gold=decode_text((path / entry["gold"]).read_bytes()),
        )
        groups.setdefault((entry["era"], entry["site"]), []).append(page)
    return [
        Group(name=f"{era}/{site}", site=f"{site}-{era}", pages=pages, source=site, period=era)
        for (era, site), pages in groups.items()
    ]


def _load_aeb(path: Path) -> list[Group]:
    truth = json.loads((path / "ground-truth.json").read_text(encoding="utf-8"))
    groups: dict[str, list[Page]] = {}
    for page_id, entry in truth.items():
        url = entry.get("url")
        page = Page(
            id=page_id,
            url=url,
            html=gzip.decompress((path / "html" / f"{page_id}.html.gz").read_bytes()),
            gold=entry.get("articleBody") or "",
        )
        groups.setdefault(site_of(url) if url else page_id, []).append(page)
    return [Group(name=site, site=site, pages=pages, source=site) for site, pages in groups.items()]


# --- systems ------------------------------------------------------------------------------------------------


def _extract_default(html: bytes) -> str:
    return trafilatura.extract(html) or ""


def _extract_dedup(html: bytes, cache: LRUCache) -> str:
    return trafilatura.extract(html, deduplicate=cache) or ""


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - started


@dataclass(frozen=True, slots=True)
class Prepared:
    """One page extracted once, for every protocol: the baselines' texts and our extraction."""

    page: Page
    baseline: str
    dedup: str
    extracted: Extracted | None
    seconds: dict[str, float]  # per system, the extraction's wall time


def prepare(groups: list[Group]) -> list[tuple[Group, list[Prepared]]]:
    """Extract every page with the three systems (the slow part: ~1 min for big9)."""
    dedup_cache = LRUCache(maxsize=LRU_SIZE)
    out = []
    for group in groups:
        pages = []
        for p in group.pages:
            base, t_base = _timed(_extract_default, p.html)
            dedup, t_dedup = _timed(_extract_dedup, p.html, dedup_cache)
            ex, t_ours = _timed(extract_page, p.html, p.url)
            pages.append(Prepared(p, base, dedup, ex, {"trafilatura": t_base, "traf-dedup": t_dedup, "ours": t_ours}))
        out.append((group, pages))
    return out


def learn(memory: SiteMemory, site: str, pages: list[Prepared], *, share: bool = True) -> list[bytes]:
    """The pipeline's first step for a batch: observe every page. Returns what the site shared with the fleet
    (with ``share=False`` it is only returned: the fleet-wide prior stays as it is)."""
    titles = [p.extracted.title for p in pages if p.extracted is not None and p.extracted.title]
    crossed: list[bytes] = []
    for p in pages:
        ex = p.extracted
        if ex is not None:
            others = [t for t in titles if t != ex.title]
            pipe = memory.r.pipeline(transaction=False)
            memory.observe(site, p.page.id, ex.text, ex.title, others, slots=ex.slots, pipe=pipe)
            (reply,) = pipe.execute()
            crossed += memory.share(reply) if share else [bytes(h) for h in reply[1:]]
    return crossed


def clean_all(memory: SiteMemory, site: str, pages: list[Prepared]) -> list[CleanResult | None]:
    """The pipeline's second step: clean each page with what the memories know."""
    return [
        memory.clean(site, p.page.id, p.extracted.text, p.extracted.title, slots=p.extracted.slots)
        if p.extracted is not None else None
        for p in pages
    ]


def delete_site(client: redis.Redis, site: str) -> None:
    pattern = key("site", site_part(site), "*")
    batch = list(client.scan_iter(match=pattern, count=500))
    if batch:
        client.delete(*batch)


def delete_fleet(client: redis.Redis, namespace: str) -> None:
    batch = list(client.scan_iter(match=key(namespace, "*"), count=500))
    if batch:
        client.delete(*batch)


def fleet_memory(client: redis.Redis, namespace: str) -> SiteMemory:
    """A site memory whose fleet-wide prior is an evaluation's own (``namespace``), not the live one."""
    settings = get_settings()
    return SiteMemory(client, settings, fleet=FleetPrior(client, settings, namespace=namespace))


def score(texts: list[str], pages: list[Prepared], seconds: float) -> Score:
    golds = [p.page.gold for p in pages]
    return Score(
        prf=[prf(t, g) for t, g in zip(texts, golds, strict=True)],
        repeated_left=repeated_left(texts, golds),
        lines_lost=sum(lines_lost(t, p.baseline, p.page.gold) for t, p in zip(texts, pages, strict=True)),
        seconds=seconds,
    )


@dataclass(slots=True)
class RuleTally:
    """What one cleaning rule removed: lines, and how many of them are lines of the ground truth."""

    removed: Counter[str] = field(default_factory=Counter)
    truth: Counter[str] = field(default_factory=Counter)

    def add(self, result: CleanResult | None, gold: str) -> None:
        if result is None:
            return
        truth = normalise_line(" ".join(_lines(gold)))
        for line, reason in result.removed:
            norm = normalise_line(line)
            self.removed[reason] += 1
            if _WORD.search(norm) and norm in truth:
                self.truth[reason] += 1

    def update(self, other: RuleTally) -> None:
        self.removed.update(other.removed)
        self.truth.update(other.truth)

    def lines(self) -> list[str]:
        return [f"  {reason:<12} removed {self.removed[reason]:>5}  of them in the ground truth {self.truth[reason]:>3}"
                for reason in REASONS if self.removed[reason]]


def evaluate_groups(
    groups: list[Group], client: redis.Redis, *, tally: RuleTally | None = None,
    prepared: list[tuple[Group, list[Prepared]]] | None = None,
) -> Iterator[tuple[Group, dict[str, Score]]]:
    """Score every group with the three systems; site memory and fleet keys are this run's own and deleted."""
    run = uuid.uuid4().hex[:8]
    namespace = f"fleet-eval-{run}"
    memory = fleet_memory(client, namespace)
    try:
        for group, pages in prepared or prepare(groups):
            site = f"{group.site}.eval-{run}"
            try:
                started = time.perf_counter()
                learn(memory, site, pages)
                results = clean_all(memory, site, pages)
                clean_seconds = time.perf_counter() - started
            finally:
                delete_site(client, site)
            if tally is not None:
                for result, p in zip(results, pages, strict=True):
                    tally.add(result, p.page.gold)
            texts = {
                "trafilatura": [p.baseline for p in pages],
                "traf-dedup": [p.dedup for p in pages],
                "ours": [r.text if r is not None else "" for r in results],
            }
            yield group, {
                system: score(texts[system], pages,
                              sum(p.seconds[system] for p in pages) + (clean_seconds if system == "ours" else 0))
                for system in SYSTEMS
            }
    finally:
        delete_fleet(client, namespace)


def _row(name: str, system: str, score: Score) -> str:
    p, r, f = score.means()
    ms = 1000 * score.seconds / max(1, len(score.prf))
    return (
        f"{name:<28} {system:<12} {len(score.prf):>5} {p:>9.3f} {r:>7.3f} {f:>7.3f}"
        f" {score.repeated_left:>9} {score.lines_lost:>6} {ms:>8.1f}"
    )


HEADER = (
    f"{'group':<28} {'system':<12} {'pages':>5} {'precision':>9} {'recall':>7} {'f1':>7}"
    f" {'repeated':>9} {'lost':>6} {'ms/page':>8}"
)


def run_eval(path: Path, redis: redis.Redis, *, prepared: list[tuple[Group, list[Prepared]]] | None = None,
             progress: Callable[[int, int], None] | None = None) -> str:
    """The evaluation table for one set; the last line holds our totals. ``progress`` hears (groups scored,
    groups) after each group."""
    out = [f"evaluation of {path}", HEADER]
    totals = {system: Score() for system in SYSTEMS}
    tally = RuleTally()
    groups = load_groups(path) if prepared is None else [g for g, _ in prepared]
    if progress is not None:
        progress(0, len(groups))
    for done, (group, scores) in enumerate(evaluate_groups(groups if prepared is None else [], redis, tally=tally,
                                                            prepared=prepared), 1):
        if progress is not None:
            progress(done, len(groups))
        for system in SYSTEMS:
            out.append(_row(group.name, system, scores[system]))
            totals[system].add(scores[system])
    out.append("")
    for system in SYSTEMS:
        out.append(_row("TOTAL", system, totals[system]))
    out += ["", "lines removed by each rule (reasons in cleaning.reasons):", *tally.lines(), ""]
    for system in SYSTEMS:
        p, r, f = totals[system].means()
        out.append(
            f"TOTAL {system} precision={p:.3f} recall={r:.3f} f1={f:.3f}"
            f" repeated_left={totals[system].repeated_left} lines_lost={totals[system].lines_lost}"
        )
    return "\n".join(out)


def report(path: Path, client: redis.Redis, *, holdout: str | None = None, cold: bool = False,
           progress: Callable[[int, int], None] | None = None) -> str:
    """What ``ingest eval`` prints: the all-pages table, then the protocols asked for. Raises ValueError with a
    one-line message for a user error."""
    from worker.cli.evaluate_holdout import run_cold, run_holdout

    if holdout not in (None, "period"):
        raise ValueError(f"--holdout {holdout}: the only held-out unit is 'period'")
    groups = load_groups(path)
    if holdout and any(g.period is None for g in groups):
        raise ValueError(f"--holdout period: {path} has no periods (use ../shared/eval/big9)")
    prepared = prepare(groups)
    parts = []
    if holdout:
        parts.append(run_holdout(prepared, client))
    if cold:
        parts.append(run_cold(prepared, client, by_period=bool(holdout)))
    # its last line stays our all-pages totals
    parts.append(run_eval(path, client, prepared=prepared, progress=progress))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m worker.cli.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="../shared/eval/big9 or ../shared/eval/aeb")
    parser.add_argument("--holdout", choices=["period"], help="leave one period out (big9)")
    parser.add_argument("--cold", action="store_true", help="each site's first page with the fleet prior only")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    client = redis.Redis.from_url(os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL)
    try:
        print(report(args.path, client, holdout=args.holdout, cold=args.cold))
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
