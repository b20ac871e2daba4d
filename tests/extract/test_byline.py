"""worker.extract.byline gives trafilatura's own byline answer (``metadata.extract_author``) without its cost."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from trafilatura.metadata import extract_author
from trafilatura.utils import load_html
from trafilatura.xpaths import AUTHOR_DISCARD_XPATHS, AUTHOR_XPATHS

from worker.cli.evaluate import load_groups
from worker.demo.site import build_site
from worker.extract.byline import body_author

# The expressions worker.extract.byline transcribes. A trafilatura upgrade that changes them fails here: transcribe
# the new ones, then update this fingerprint.
TRANSCRIBED = "bd5f2806"


def _fingerprint() -> str:
    paths = "\n".join(x.path for x in [*AUTHOR_XPATHS, *AUTHOR_DISCARD_XPATHS])
    return hashlib.sha256(paths.encode()).hexdigest()[:8]


def test_trafilatura_expressions_are_the_transcribed_ones() -> None:
    assert _fingerprint() == TRANSCRIBED


SNIPPETS = [
    '<p class="byline">By Jane Doe</p>',
    '<div class="sidebar"><span class="author">Sidebar Person</span></div><p class="byline">By Jane Doe</p>',
    '<div class="byline">By Jane Doe<time>12 May</time> and John Roe</div>',
    '<div class="byline">By <span class="date">today</span>Jane Doe<figure>x</figure>, Paris</div>',
    '<span class="author-name">Ann Lee</span><p class="byline">By Jane Doe</p>',
    '<a rel="author" href="/a">Ann Lee</a>',
    '<author>Ann Lee</author>',
    '<div itemprop="author"><span itemprop="name">Ann Lee</span></div>',
    '<div data-component="Byline">Ann Lee</div>',
    '<div id="Author1">Ann Lee</div>',
    '<h3 class="writer-box">Ann Lee</h3>',
    '<span class="author">AB</span><span class="byline">Ann Lee</span>',
    '<span class="author">' + "Very Long Name " * 10 + '</span><p class="byl">Ann Lee</p>',
    '<section class="comments"><p class="byline">Commenter Name</p></section>',
    '<div class="comments-list"><p class="byline">Commenter Name</p></div><h4 class="username">Ann Lee</h4>',
    '<p class="byline">By Jane Doe<!-- c --> of <b>Reuters</b></p>',
    '<div><p>no byline at all</p></div>',
    '<p class="author"><rel>me</rel>Ann Lee</p>',
    '<span class="Author">Ann Lee</span>',
]


@pytest.mark.parametrize("snippet", SNIPPETS)
def test_snippets_agree_with_trafilatura(snippet: str) -> None:
    tree = load_html(f"<html><body><article>{snippet}<p>Some text of the article.</p></article></body></html>")
    assert body_author(tree) == extract_author(tree)


def test_demo_pages_agree_with_trafilatura() -> None:
    site = build_site("http://demo.example", n_articles=20, seed=3)
    trees = [load_html(r.body) for p, r in site.routes.items() if "/articles/" in p]
    assert all(body_author(t) == extract_author(t) for t in trees)
    assert sum(body_author(t) is not None for t in trees) >= 10  # the demo site has bylines


def test_evaluation_pages_agree_with_trafilatura(shared_eval: Path) -> None:
    trees = [load_html(p.html) for name in ("big9", "aeb") for g in load_groups(shared_eval / name) for p in g.pages]
    trees = [t for t in trees if t is not None]
    wrong = [(extract_author(t), body_author(t)) for t in trees if body_author(t) != extract_author(t)]
    assert len(trees) > 400 and wrong == []
    assert sum(body_author(t) is not None for t in trees) > 200
