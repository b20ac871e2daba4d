"""CPU of the cleaning steps per page on the big9 pages: ``extract_page`` (which maps each line to its slot),
the slot mapping alone, ``SiteMemory.observe`` and ``SiteMemory.clean`` (client side, ``time.process_time``).

    REDIS_URL=redis://127.0.0.1:6379/12 .venv/bin/python ops/bench/cleaning_cpu.py [--repeat 3]

Pages are fed as the pipeline feeds them: a site's batch is observed, then each page cleaned; every site name
is the run's own and its keys are deleted after (nothing else in the database is touched). Works on code
from before slots too (no slot figure then), so a checkout of an older commit can be measured the same way.
Extraction runs once (the date search off, as when the feed dates the entry); observe and clean run
``--repeat`` times on fresh site names and the smallest figure is kept (the machine is shared). The last line
is ``cleaning_cpu pages= extract_ms= slots_ms= observe_ms= clean_ms= observe_clean_ms=``.
"""

from __future__ import annotations

import argparse
import gzip
import inspect
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from worker.clean.memory import SiteMemory
from worker.core.keys import key, site_part
from worker.extract.page import extract_page

BIG9 = Path(__file__).resolve().parents[3] / "shared" / "eval" / "big9"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--path", type=Path, default=BIG9)
    args = parser.parse_args()
    manifest = json.loads((args.path / "manifest.json").read_text(encoding="utf-8"))
    groups: dict[str, list[tuple[str, bytes]]] = {}
    for entry in manifest:
        html = gzip.decompress((args.path / entry["html"]).read_bytes())
        groups.setdefault(f"{entry['site']}-{entry['era']}", []).append((entry["html"], html))
    n = sum(len(g) for g in groups.values())

    extracted: dict[str, list[tuple[str, Any]]] = {}
    started = time.process_time()
    for site, pages in groups.items():
        extracted[site] = [(pid, extract_page(html, None, date_search=False)) for pid, html in pages]
    extract_ms = (time.process_time() - started) / n * 1000

    slots_ms = float("nan")
    try:
        from trafilatura.utils import load_html

        from worker.extract.slots import line_slots

        trees = [(load_html(html), ex.text.split("\n")) for site, pages in groups.items()
                 for (_, html), (_, ex) in zip(pages, extracted[site], strict=True) if ex is not None]
        started = time.process_time()
        for tree, lines in trees:
            line_slots(tree, lines)
        slots_ms = (time.process_time() - started) / n * 1000
    except ImportError:
        pass

    r = redis.Redis.from_url(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/12")
    namespace = f"fleet-bench-{uuid.uuid4().hex[:8]}"
    try:  # the run's own fleet-wide prior, not the database's live one
        from worker.clean.fleet import FleetPrior

        memory = SiteMemory(r, fleet=FleetPrior(r, namespace=namespace))
    except ImportError:
        memory = SiteMemory(r)
    with_slots = "slots" in inspect.signature(memory.observe).parameters
    observe_ms = clean_ms = float("inf")
    for _ in range(args.repeat):
        run = uuid.uuid4().hex[:8]
        t_observe = t_clean = 0.0
        for site, pages in extracted.items():
            name = f"{site}.bench-{run}"
            titles = [ex.title for _, ex in pages if ex is not None and ex.title]
            started = time.process_time()
            for pid, ex in pages:
                if ex is not None:
                    extra = {"slots": ex.slots} if with_slots else {}
                    memory.observe(name, pid, ex.text, ex.title, [t for t in titles if t != ex.title], **extra)
            t_observe += time.process_time() - started
            started = time.process_time()
            for pid, ex in pages:
                if ex is not None:
                    extra = {"slots": ex.slots} if with_slots else {}
                    memory.clean(name, pid, ex.text, ex.title, **extra)
            t_clean += time.process_time() - started
            keys = list(r.scan_iter(match=key("site", site_part(name), "*"), count=500))
            if keys:
                r.delete(*keys)
        observe_ms = min(observe_ms, t_observe / n * 1000)
        clean_ms = min(clean_ms, t_clean / n * 1000)
    fleet = list(r.scan_iter(match=key(namespace, "*"), count=500))
    if fleet:
        r.delete(*fleet)
    print(f"{n} pages; CPU ms per page: extract_page {extract_ms:.2f} (of which slots {slots_ms:.2f}), "
          f"observe {observe_ms:.3f}, clean {clean_ms:.3f}")
    print(f"cleaning_cpu pages={n} extract_ms={extract_ms:.2f} slots_ms={slots_ms:.2f} observe_ms={observe_ms:.3f}"
          f" clean_ms={clean_ms:.3f} observe_clean_ms={observe_ms + clean_ms:.3f}")


if __name__ == "__main__":
    main()
