"""Lines of an extracted text mapped back to the block they came from in the page (pure: lxml only)."""

from __future__ import annotations

from trafilatura.utils import load_html

from worker.extract.page import extract_page
from worker.extract.slots import NO_SLOT, line_paths, line_slots, slot_id

PARAGRAPHS = [
    "The city council voted on Tuesday to extend the tram line to the northern districts, a project first "
    "proposed more than a decade ago and repeatedly delayed by disputes over its cost.",
    "Supporters said the extension would cut commuting times for tens of thousands of residents, while "
    "opponents argued that the money would be better spent on repairing the existing bus network.",
    "Construction is expected to begin next spring and to last about three years, according to the "
    "council's transport department, which will publish a detailed timetable in the coming weeks.",
]

PAGE = f"""<html><head><title>Tram line extended - City News</title>
<script>var headline = "Tram line extended";</script></head><body>
<div id="main-3" class="wrap col-12">
 <h1 class="headline">Tram line extended</h1>
 <article class="story">
  <p><b>O</b>n Tuesday the council voted again.</p>
  <p>Supporters said <a href="#x">the
       extension</a> would cut commuting times.</p>
  <ul class="facts"><li>Cost: 40 million</li><li>Opening: 2030</li></ul>
  <table><tr><td>Line</td><td>Stops</td></tr></table>
  {"".join(f"<p>{p}</p>" for p in PARAGRAPHS)}
 </article>
 <!-- teaser --> <aside class="promo-7"><p><span>We tried the folding bike and we loved it. Photos</span></p></aside>
</div></body></html>"""

MAIN = "html/body/div#main-0.wrap.col-0"  # digits masked in ids and classes, not in tags


def test_lines_map_to_their_blocks() -> None:
    lines = [
        "Tram line extended",
        "On Tuesday the council voted again.",  # a drop cap: "<b>O</b>n"
        "Supporters said the extension would cut commuting times.",  # a link and a line break inside
        "- Cost: 40 million",
        "- Opening: 2030",
        "| Line | Stops |",
        "We tried the folding bike and we loved it. Photos",
        "A line that is nowhere in the page",
    ]
    assert line_paths(load_html(PAGE), lines) == [
        f"{MAIN}/h1.headline",
        f"{MAIN}/article.story/p",
        f"{MAIN}/article.story/p",
        f"{MAIN}/article.story/ul.facts/li",
        f"{MAIN}/article.story/ul.facts/li",
        f"{MAIN}/article.story/table/tr/td",
        f"{MAIN}/aside.promo-0/p",
        None,
    ]
    slots = line_slots(load_html(PAGE), lines)
    # the page's own headline is never a template slot; an unknown line has none either
    assert slots[0] == NO_SLOT and slots[-1] == NO_SLOT
    assert slots[1] == slots[2] == slot_id(f"{MAIN}/article.story/p") and len(slots[1]) == 16
    assert slots[3] == slots[4] != slots[1]


def test_repeated_lines_follow_the_page_order() -> None:
    page = "<html><body><div class='a'><p>Read more</p></div><div class='b'><p>Read more</p></div></body></html>"
    assert line_paths(load_html(page), ["Read more", "Read more"]) == ["html/body/div.a/p", "html/body/div.b/p"]


def test_extract_page_gives_one_slot_per_line() -> None:
    extracted = extract_page(PAGE)
    assert extracted is not None
    lines = extracted.text.split("\n")
    assert len(extracted.slots) == len(lines) and len(lines) >= 3
    body = slot_id(f"{MAIN}/article.story/p")
    assert [s for line, s in zip(lines, extracted.slots, strict=True) if line in PARAGRAPHS] == [body] * 3
