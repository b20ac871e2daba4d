"""How long generating the demo sites takes: ``build_many`` for 20 sites of 50 articles (1 000 pages), what the
benchmarks and the scale tests build before they start.

    .venv/bin/python ops/bench/demo_site.py [--sites 20] [--articles 50] [--runs 3]

CPU time of this process (``time.process_time``), best of ``--runs``. Last line:
``demo_site pages=N best_cpu_s=S``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from worker.demo.site import build_many


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--articles", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    best = float("inf")
    for run in range(args.runs):
        started = time.process_time()
        sites = build_many("http://demo.example", n_sites=args.sites, articles_per_site=args.articles, seed=run)
        best = min(best, time.process_time() - started)
        print(f"run {run}: {sum(len(s.articles) for s in sites)} pages in {best:.2f} s CPU (best so far)")
    print(f"demo_site pages={args.sites * args.articles} best_cpu_s={best:.2f}")


if __name__ == "__main__":
    main()
