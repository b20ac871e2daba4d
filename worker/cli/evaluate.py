"""``ingest eval PATH``: extraction and site-level cleaning quality on an evaluation set with ground truth.

PATH is ``../shared/eval/big9`` (27 site+period groups of 10 pages sharing a template) or
``../shared/eval/aeb`` (at most 2 pages per site). Three systems are scored per group and in total:

- ``trafilatura``: ``trafilatura.extract(html)`` with default options (the README's baseline);
- ``traf-dedup``: the same with ``deduplicate=True``, one cache, pages fed in order;
- ``ours``: the pipeline's own code: ``extract_page`` for a batch, ``SiteMemory.observe`` for every page of
  the batch, then ``SiteMemory.clean`` for each, with a real Redis.

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

from worker.clean.memory import SiteMemory
from worker.clean.rules import normalise_line
from worker.core.keys import key, site_part
from worker.core.urls import site_of
from worker.extract.page import extract_page

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
        Group(name=f"{era}/{site}", site=f"{site}-{era}", pages=pages)
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
    return [Group(name=site, site=site, pages=pages) for site, pages in groups.items()]


# --- systems ------------------------------------------------------------------------------------------------


def _extract_default(html: bytes) -> str:
    return trafilatura.extract(html) or ""


def _extract_dedup(html: bytes, cache: LRUCache) -> str:
    return trafilatura.extract(html, deduplicate=cache) or ""


def _timed(fn: Callable[..., str], *args: Any) -> tuple[str, float]:
    started = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - started


def _ours(memory: SiteMemory, site: str, pages: list[Page]) -> tuple[list[str], list[str], float]:
    """The pipeline's path for one batch: extract all, observe all, then clean each. Returns the cleaned
    texts, the titles, and the seconds spent."""
    started = time.perf_counter()
    extracted = [extract_page(p.html, p.url) for p in pages]
    titles = [e.title for e in extracted if e is not None and e.title]
    for page, ex in zip(pages, extracted, strict=True):
        if ex is not None:
            others = [t for t in titles if t != ex.title]
            memory.observe(site, page.id, ex.text, ex.title, others)
    texts = []
    for page, ex in zip(pages, extracted, strict=True):
        texts.append(memory.clean(site, page.id, ex.text, ex.title).text if ex is not None else "")
    seconds = time.perf_counter() - started
    return texts, [e.title or "" if e is not None else "" for e in extracted], seconds


def _delete_keys(client: redis.Redis, site: str) -> None:
    pattern = key("site", site_part(site), "*")
    batch = list(client.scan_iter(match=pattern, count=500))
    if batch:
        client.delete(*batch)


def evaluate_groups(groups: list[Group], client: redis.Redis) -> Iterator[tuple[Group, dict[str, Score]]]:
    """Score every group with the three systems; site memory keys are this run's own and deleted after."""
    run = uuid.uuid4().hex[:8]
    memory = SiteMemory(client)
    dedup_cache = LRUCache(maxsize=LRU_SIZE)
    for group in groups:
        site = f"{group.site}.eval-{run}"
        golds = [p.gold for p in group.pages]
        base = [_timed(_extract_default, p.html) for p in group.pages]
        dedup = [_timed(_extract_dedup, p.html, dedup_cache) for p in group.pages]
        try:
            ours, _, ours_seconds = _ours(memory, site, group.pages)
        finally:
            _delete_keys(client, site)
        base_texts = [b for b, _ in base]
        outputs = {
            "trafilatura": (base_texts, sum(s for _, s in base)),
            "traf-dedup": ([d for d, _ in dedup], sum(s for _, s in dedup)),
            "ours": (ours, ours_seconds),
        }
        scores: dict[str, Score] = {}
        for system, (texts, seconds) in outputs.items():
            scores[system] = Score(
                prf=[prf(t, g) for t, g in zip(texts, golds, strict=True)],
                repeated_left=repeated_left(texts, golds),
                lines_lost=sum(lines_lost(t, b, g) for t, b, g in zip(texts, base_texts, golds, strict=True)),
                seconds=seconds,
            )
        yield group, scores


def _row(name: str, system: str, score: Score) -> str:
    p, r, f = score.means()
    ms = 1000 * score.seconds / max(1, len(score.prf))
    return (
        f"{name:<28} {system:<12} {len(score.prf):>5} {p:>9.3f} {r:>7.3f} {f:>7.3f}"
        f" {score.repeated_left:>9} {score.lines_lost:>6} {ms:>8.1f}"
    )


def run_eval(path: Path, redis: redis.Redis, progress: Callable[[int, int], None] | None = None) -> str:
    """The evaluation table for one set; the last line holds our totals. ``progress`` hears (groups scored,
    groups) after each group."""
    header = (
        f"{'group':<28} {'system':<12} {'pages':>5} {'precision':>9} {'recall':>7} {'f1':>7}"
        f" {'repeated':>9} {'lost':>6} {'ms/page':>8}"
    )
    out = [f"evaluation of {path}", header]
    totals = {system: Score() for system in SYSTEMS}
    groups = load_groups(path)
    if progress is not None:
        progress(0, len(groups))
    for done, (group, scores) in enumerate(evaluate_groups(groups, redis), 1):
        if progress is not None:
            progress(done, len(groups))
        for system in SYSTEMS:
            out.append(_row(group.name, system, scores[system]))
            totals[system].add(scores[system])
    out.append("")
    for system in SYSTEMS:
        out.append(_row("TOTAL", system, totals[system]))
    out.append("")
    for system in SYSTEMS:
        p, r, f = totals[system].means()
        out.append(
            f"TOTAL {system} precision={p:.3f} recall={r:.3f} f1={f:.3f}"
            f" repeated_left={totals[system].repeated_left} lines_lost={totals[system].lines_lost}"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m worker.cli.evaluate PATH  (../shared/eval/big9 or ../shared/eval/aeb)",
              file=sys.stderr)
        return 2
    client = redis.Redis.from_url(os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL)
    try:
        print(run_eval(Path(args[0]), client))
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
