"""``ingest eval`` reports its progress group by group (what the terminal's progress bar shows), on a tiny
evaluation set written here in the big9 layout."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import redis

from worker.cli.evaluate import run_eval

PAGE = "<html><body><nav>Home | News</nav><article><h1>{title}</h1><p>{text}</p></article></body></html>"


def tiny_set(root: Path, groups: int) -> Path:
    manifest = []
    for g in range(groups):
        for p in range(2):
            name = f"g{g}p{p}"
            text = f"Sentence {p} of group {g} about the harbour and the town council. " * 12
            (root / f"{name}.html.gz").write_bytes(gzip.compress(PAGE.format(title=name, text=text).encode()))
            (root / f"{name}.txt").write_text(text)
            manifest.append({"html": f"{name}.html.gz", "gold": f"{name}.txt", "era": "2020", "site": f"site{g}",
                             "canonical_url": f"https://site{g}.example/{name}.html"})
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_progress_hears_each_group(tmp_path: Path, redis_client: redis.Redis) -> None:
    heard: list[tuple[int, int]] = []
    report = run_eval(tiny_set(tmp_path, 3), redis_client, progress=lambda done, total: heard.append((done, total)))
    assert heard == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert report.splitlines()[-1].startswith("TOTAL ours ")
