"""extract_page's selective metadata pass agrees with trafilatura's full one on every field we publish."""

from __future__ import annotations

from pathlib import Path

import trafilatura
from trafilatura.settings import set_date_params

from worker.cli.evaluate import load_groups
from worker.demo.site import build_site
from worker.extract.page import EXTRACT_OPTIONS, extract_page

FIELDS = ("title", "author", "sitename", "description", "date")
NONE: dict[str, list[tuple[str, object, object]]] = {f: [] for f in (*FIELDS, "extracted")}


def _disagreements(pages: list[tuple[str, bytes | str]]) -> dict[str, list[tuple[str, object, object]]]:
    """Per field, the pages where ours and trafilatura's full pass differ; under ``extracted``, the pages where
    we found no article although trafilatura's own extraction (same options) finds text: a page dropped is a
    disagreement too, never a page skipped."""
    wrong: dict[str, list[tuple[str, object, object]]] = {f: [] for f in (*FIELDS, "extracted")}
    for url, html in pages:
        ours = extract_page(html, url)
        if ours is None:
            text = trafilatura.extract(html, url=url, **{k: v for k, v in EXTRACT_OPTIONS.items()
                                                         if k != "with_metadata"})
            if text:
                wrong["extracted"].append((url, None, len(text)))
            continue
        full = trafilatura.extract_metadata(html, url, set_date_params(True))
        for name in FIELDS:
            theirs = getattr(full, name) or None
            if getattr(ours, name) != theirs:
                wrong[name].append((url, getattr(ours, name), theirs))
    return wrong


def test_demo_pages_metadata_matches_trafilatura() -> None:
    site = build_site("http://demo.example", n_articles=12, seed=5)
    pages = [(site.base_url + path, resp.body) for path, resp in site.routes.items() if "/articles/" in path]
    assert len(pages) == 12
    assert _disagreements(pages) == NONE
    first = extract_page(pages[0][1], pages[0][0])
    assert first is not None and first.author and first.sitename and first.date


def test_date_search_can_be_skipped() -> None:
    site = build_site("http://demo.example", n_articles=1, seed=6)
    path, resp = next((p, r) for p, r in site.routes.items() if "/articles/" in p)
    page = extract_page(resp.body, site.base_url + path, date_search=False)
    assert page is not None and page.date is None and page.title


def test_real_pages_metadata_matches_trafilatura(shared_eval: Path) -> None:
    pages = [(p.url or "http://example.com/a", p.html) for g in load_groups(shared_eval / "big9")[:9]
             for p in g.pages]
    assert len(pages) >= 9
    assert _disagreements(pages) == NONE
