"""The cleaning rules one at a time (no Redis): each threshold at its value and one step below, where on the
page a rule may act, the evidence ``lookup_stats`` reads from the site memory's raw counts, and the hashes
the memory stores (which outlive a deploy)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from worker.clean import rules as clean
from worker.clean.rules import CleanRules, LineStats

# Prose lines of more than fifteen words: anchors of the article's body.
P0 = ("The city council voted on Tuesday to extend the tram line to the northern districts, a project first "
      "proposed more than a decade ago.")
P1 = ("Supporters said the extension would cut commuting times for tens of thousands of residents, while "
      "opponents wanted the money spent on buses.")
P2 = ("Construction is expected to begin next spring and to last about three years, according to the council's "
      "transport department.")
# Short lines (fifteen words or fewer) with no digit, no label and no full stop at the end.
SHORT = "Tram fares to rise next month"
OTHER = "Weather warning for the weekend"
THIRD = "Council budget explained"
BARE = "| | |"
_VOCABULARY = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo",
               "lima", "metro", "nectar", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor",
               "whiskey", "yankee", "zulu")


def words(n: int) -> str:
    """A line of ``n`` distinct words, no digit, no full stop."""
    assert n <= len(_VOCABULARY)
    return " ".join(_VOCABULARY[:n])


def reasons(lines: Sequence[tuple[str, LineStats]], rules: CleanRules | None = None,
            *, keep_long: bool = False) -> list[str | None]:
    return clean.decide([line for line, _ in lines], [st for _, st in lines], rules, keep_long=keep_long)


NONE = LineStats()


def placed(line: str, stats: LineStats, where: str) -> list[tuple[str, LineStats]]:
    """The line between two prose paragraphs ("middle") or after the last one ("edge": the trailing block)."""
    if where == "middle":
        return [(P0, NONE), (line, stats), (P1, NONE)]
    return [(P0, NONE), (P1, NONE), (line, stats)]


DIGITS = "Updated at 08h35 on 09/04"
LABELLED = "Read more: tram fares rise"
LONG_DIGITS = ("© 2007 Cable News Network LP, LLLP. A Time Warner Company. All Rights Reserved. Terms under "
               "which this service is provided to you")


@pytest.mark.parametrize(
    ("line", "stats", "where", "expected"),
    [
        # a short line of the site's template goes wherever it is, from two other pages on
        (SHORT, LineStats(pages=2), "middle", clean.SITE_REPEAT),
        (SHORT, LineStats(pages=1), "edge", None),
        (words(15), LineStats(pages=2), "middle", clean.SITE_REPEAT),
        # a long line (sixteen words) needs an edge block, then two other pages, exact or masked
        (words(16), LineStats(pages=2), "middle", None),
        (words(16), LineStats(pages=2), "edge", clean.SITE_REPEAT),
        (words(16), LineStats(pages=1), "edge", None),
        (LONG_DIGITS, LineStats(template_pages=2), "edge", clean.TEMPLATE),
        (LONG_DIGITS, LineStats(template_pages=1), "edge", None),
        (LONG_DIGITS, LineStats(template_pages=2), "middle", None),
        # a short line with digits whose masked form ("updated at 0h0 on 0/0") three other pages had
        (DIGITS, LineStats(template_pages=3), "middle", clean.TEMPLATE),
        (DIGITS, LineStats(template_pages=2), "edge", None),
        (SHORT, LineStats(template_pages=3), "edge", None),  # no digits: the masked form is the line itself
        # a "Label:" lead-in seen on three other pages, at an edge only
        (LABELLED, LineStats(label_pages=3), "edge", clean.TEMPLATE),
        (LABELLED, LineStats(label_pages=3), "middle", None),
        (LABELLED, LineStats(label_pages=2), "edge", None),
        # boilerplate on three sites of the fleet, at an edge only
        (SHORT, LineStats(fleet_sites=3), "edge", clean.FLEET),
        (SHORT, LineStats(fleet_sites=3), "middle", None),
        (SHORT, LineStats(fleet_sites=2), "edge", None),
        # a slot seen on two other pages that held prose on at most a tenth of them, at an edge only
        (SHORT, LineStats(slot_pages=2), "edge", clean.SLOT),
        (SHORT, LineStats(slot_pages=2), "middle", None),
        (SHORT, LineStats(slot_pages=1), "edge", None),
        (SHORT, LineStats(slot_pages=10, slot_prose_pages=1), "edge", clean.SLOT),
        (SHORT, LineStats(slot_pages=10, slot_prose_pages=2), "edge", None),
        (SHORT, LineStats(slot_pages=10, title_like=True), "edge", None),  # the page's own headline
        # another article's headline goes anywhere if it is short; a long line is never taken for one
        (SHORT, LineStats(headline=True), "middle", clean.HEADLINE),
        (words(16), LineStats(headline=True), "edge", None),
        # a line without a word ("| | |") needs one other page
        (BARE, LineStats(pages=1), "middle", clean.SITE_REPEAT),
        (BARE, LineStats(), "edge", None),
    ],
    ids=[
        "short-2-pages", "short-1-page", "15-words-is-short", "long-middle", "long-edge", "long-1-page",
        "long-template-edge", "long-template-1-page", "long-template-middle", "template-3-pages",
        "template-2-pages", "template-without-digits", "label-edge", "label-middle", "label-2-pages",
        "fleet-edge", "fleet-middle", "fleet-2-sites", "slot-edge", "slot-middle", "slot-1-page",
        "slot-prose-tenth", "slot-prose-over-tenth", "slot-title-like", "headline", "headline-long",
        "bare-1-page", "bare-0-pages",
    ],
)
def test_each_rule_at_its_threshold_and_place(line: str, stats: LineStats, where: str,
                                              expected: str | None) -> None:
    want = [None, None, expected] if where == "edge" else [None, expected, None]
    assert reasons(placed(line, stats, where)) == want


def test_long_lines_are_kept_when_the_page_is_a_near_copy() -> None:
    page = placed(words(16), LineStats(pages=5), "edge")
    assert reasons(page, keep_long=True) == [None, None, None]
    page = placed(LONG_DIGITS, LineStats(template_pages=5), "edge")
    assert reasons(page, keep_long=True) == [None, None, None]
    # short template lines still go
    assert reasons(placed(SHORT, LineStats(pages=5), "edge"), keep_long=True)[-1] == clean.SITE_REPEAT


def test_a_line_repeated_within_the_page_goes_at_an_edge_unless_it_is_a_sentence() -> None:
    # a link title twice on the page (top and bottom), seen nowhere else
    assert reasons([(SHORT, NONE), (P0, NONE), (P1, NONE), (SHORT, NONE)]) == [
        clean.PAGE_REPEAT, None, None, clean.PAGE_REPEAT]
    # ...but not between paragraphs
    assert reasons([(P0, NONE), (SHORT, NONE), (P1, NONE), (SHORT, NONE), (P2, NONE)]) == [None] * 5
    # a sentence the article repeats (a recipe's "Stir well.") stays, unless the site has it elsewhere too
    stir = "Stir well."
    assert reasons([(stir, NONE), (P0, NONE), (P1, NONE), (stir, NONE)]) == [None] * 4
    once_elsewhere = LineStats(pages=1)
    assert reasons([(stir, once_elsewhere), (P0, NONE), (P1, NONE), (stir, once_elsewhere)]) == [
        clean.PAGE_REPEAT, None, None, clean.PAGE_REPEAT]
    # once on the page and on one other page: not enough
    assert reasons([(P0, NONE), (P1, NONE), (SHORT, once_elsewhere)]) == [None, None, None]


def test_lines_without_words() -> None:
    # repeated within the page: a separator of the template, wherever it is
    assert reasons([(BARE, NONE), (P0, NONE), (BARE, NONE), (P1, NONE)]) == [
        clean.SITE_REPEAT, None, clean.SITE_REPEAT, None]
    # a bare line does not end the look at the lines after it
    assert reasons([(BARE, LineStats(pages=1)), (P0, NONE), (SHORT, LineStats(pages=2)), (P1, NONE)]) == [
        clean.SITE_REPEAT, None, clean.SITE_REPEAT, None]


def test_a_prose_anchor_is_a_long_line_nothing_speaks_against() -> None:
    label = LineStats(label_pages=3)
    # sixteen words with no evidence: an anchor, so the labelled line under it is not at the edge
    assert reasons([(words(16), NONE), (LABELLED, label), (P0, NONE)]) == [None, None, None]
    # fifteen words are not prose: the labelled line is still in the leading block
    assert reasons([(words(15), NONE), (LABELLED, label), (P0, NONE)]) == [None, clean.TEMPLATE, None]
    # a long line that repeats on the site anchors nothing: both go
    assert reasons([(words(16), LineStats(pages=2)), (LABELLED, label), (P0, NONE)]) == [
        clean.SITE_REPEAT, clean.TEMPLATE, None]


def test_edge_flags_with_one_anchor_at_either_end() -> None:
    assert clean._edge_flags([True, False, False]) == [False, True, True]
    assert clean._edge_flags([False, False, True]) == [True, True, False]
    assert clean._edge_flags([True]) == [False]
    assert clean._edge_flags([]) == []


REMOVED_A, REMOVED_B = (SHORT, LineStats(pages=2)), (OTHER, LineStats(pages=2))


def test_a_sidebar_line_is_short_unsentenced_between_removed_lines_at_an_edge() -> None:
    # at the top of the page (second line) and at the bottom (second to last)
    assert reasons([REMOVED_A, (THIRD, NONE), REMOVED_B, (P0, NONE), (P1, NONE)]) == [
        clean.SITE_REPEAT, clean.SIDEBAR, clean.SITE_REPEAT, None, None]
    assert reasons([(P0, NONE), (P1, NONE), REMOVED_A, (THIRD, NONE), REMOVED_B]) == [
        None, None, clean.SITE_REPEAT, clean.SIDEBAR, clean.SITE_REPEAT]
    # fifteen words are still short
    assert reasons([(P0, NONE), (P1, NONE), REMOVED_A, (words(15), NONE), REMOVED_B])[3] == clean.SIDEBAR
    # a removed line on one side only is not enough, above or below
    assert reasons([(P0, NONE), (P1, NONE), (OTHER, NONE), (THIRD, NONE), REMOVED_A]) == [None] * 4 + [
        clean.SITE_REPEAT]
    assert reasons([(P0, NONE), (P1, NONE), REMOVED_A, (THIRD, NONE), (OTHER, NONE)]) == [
        None, None, clean.SITE_REPEAT, None, None]
    # a sentence there is the article's last short paragraph
    assert reasons([(P0, NONE), (P1, NONE), REMOVED_A, ("He left early.", NONE), REMOVED_B])[3] is None
    # between paragraphs it is a subheading
    assert reasons([(P0, NONE), REMOVED_A, (THIRD, NONE), REMOVED_B, (P1, NONE)])[2] is None
    # turned off
    assert reasons([REMOVED_A, (THIRD, NONE), REMOVED_B, (P0, NONE)], CleanRules(sidebar=False))[1] is None


def test_the_first_and_last_lines_are_never_sidebar() -> None:
    # they have a removed neighbour on one side only (the page does not wrap around)
    assert reasons([(THIRD, NONE), REMOVED_A, (P0, NONE), (P1, NONE), REMOVED_B]) == [
        None, clean.SITE_REPEAT, None, None, clean.SITE_REPEAT]
    assert reasons([REMOVED_A, (P0, NONE), (P1, NONE), REMOVED_B, (THIRD, NONE)]) == [
        clean.SITE_REPEAT, None, None, clean.SITE_REPEAT, None]


def test_removing_half_the_words_is_not_yet_a_near_copy() -> None:
    twenty = " ".join(_VOCABULARY[5:25])
    # the repeated long line is exactly half of the page's words: removed
    result = clean.clean_lines([twenty, words(20)], [NONE, LineStats(pages=2)])
    assert result.removed == [(words(20), clean.SITE_REPEAT)]
    assert result.text == twenty
    # one word more than half: the page is a near-copy of another article, its long lines stay
    result = clean.clean_lines([twenty, words(21)], [NONE, LineStats(pages=2)])
    assert result.removed == []
    assert result.text == f"{twenty}\n{words(21)}"


def test_clean_lines_applies_the_thresholds_it_is_given() -> None:
    stricter = CleanRules(short_min_pages=3)
    # a short line seen on two other pages is no template when three are asked for
    assert clean.clean_lines([P0, SHORT], [NONE, LineStats(pages=2)], stricter).removed == []
    # ...also on a near-copy page, decided again with its long lines kept
    near_copy = clean.clean_lines([words(20), SHORT], [LineStats(pages=5), LineStats(pages=2)], stricter)
    assert near_copy.removed == []
    assert clean.clean_lines([words(20), SHORT], [LineStats(pages=5), LineStats(pages=3)], stricter).removed == [
        (SHORT, clean.SITE_REPEAT)]


def test_stats_not_aligned_with_the_lines_are_refused() -> None:
    # a line without its evidence would silently be kept: a caller's bug, not a page to clean
    with pytest.raises(ValueError):
        clean.decide([P0, SHORT], [NONE])
    with pytest.raises(ValueError):
        clean.clean_lines([P0, SHORT], [NONE, NONE, NONE])


def test_an_empty_page() -> None:
    assert clean.clean_lines([], []) == clean.CleanResult(text="")


# --- the evidence read from the site memory's counts -------------------------------------------------------


def norm(line: str) -> str:
    return clean.normalise_line(line)


def test_the_evidence_does_not_count_the_page_itself() -> None:
    lines = [SHORT, DIGITS, LABELLED]
    exact = {clean.exact_hash(norm(line)): 3 for line in lines}
    template = {clean.template_hash(norm(DIGITS)): 4}
    labels = {clean.label_hash("read more"): 5}
    assert clean.lookup_stats(lines, None, exact, template, set(), True, labels) == [
        LineStats(pages=2), LineStats(pages=2, template_pages=3), LineStats(pages=2, label_pages=4)]
    assert clean.lookup_stats(lines, None, exact, template, set(), False, labels) == [
        LineStats(pages=3), LineStats(pages=3, template_pages=4), LineStats(pages=3, label_pages=5)]


def test_a_line_the_memory_did_not_keep_has_no_evidence() -> None:
    # the page is observed, but its bucket was full (or has expired): nothing counted, nothing negative
    lines = [SHORT, DIGITS, LABELLED]
    assert clean.lookup_stats(lines, None, {}, {}, set(), True, {}, slots=["aside"] * 3,
                              slot_counts={}) == [LineStats()] * 3


def test_a_page_the_memory_never_saw_has_no_evidence() -> None:
    # cleaned before it was observed, on a new site: counts absent, nothing to take off for the page itself
    lines = [SHORT, DIGITS, LABELLED]
    assert clean.lookup_stats(lines, None, {}, {}, set(), False, {}, slots=["aside"] * 3,
                              slot_counts={}) == [LineStats()] * 3


def test_only_a_line_with_digits_has_a_masked_form_and_only_a_label_a_lead_in() -> None:
    friday = "Friday edition"  # masked, "~ edition", but with no digit
    template = {clean.template_hash(norm(friday)): 5, clean.template_hash(norm(SHORT)): 5}
    assert clean.lookup_stats([friday, SHORT], None, {}, template, set(), False, {}) == [LineStats()] * 2


def test_another_articles_headline_behind_a_bullet_or_label_but_never_the_pages_own() -> None:
    headlines = {clean.title_hash(n) for n in ("mayor opens bridge", "harbour wall repairs begin", "tram fares")}
    lines = ["- Harbour wall repairs begin", "Mayor opens bridge", "Tram fares",
             "Read also: Harbour wall repairs begin"]
    by_title = clean.lookup_stats(lines, "Mayor opens bridge - City News", {}, {}, headlines, False)
    assert [st.headline for st in by_title] == [True, False, False, True]
    # a three-word headline is one; two words ("Tram fares") are a subheading
    untitled = clean.lookup_stats(lines, None, {}, {}, headlines, False)
    assert [st.headline for st in untitled] == [True, True, False, True]


def test_slot_evidence_does_not_count_the_page_itself() -> None:
    body, aside = "article-p", "aside-p"
    lines = [P0, words(15), SHORT, OTHER]
    slots = [body, aside, aside]  # the last line has no slot (a shorter list of slots)
    counts = {clean.slot_hash(body): 5, clean.slot_prose_hash(body): 5,
              clean.slot_hash(aside): 5, clean.slot_prose_hash(aside): 1}
    # the body held prose on this page too (sixteen words or more); the aside's fifteen words are no prose
    seen = clean.lookup_stats(lines, None, {}, {}, set(), True, slots=slots, slot_counts=counts)
    assert [(st.slot_pages, st.slot_prose_pages) for st in seen] == [(4, 4), (4, 1), (4, 1), (0, 0)]
    unseen = clean.lookup_stats(lines, None, {}, {}, set(), False, slots=slots, slot_counts=counts)
    assert [(st.slot_pages, st.slot_prose_pages) for st in unseen] == [(5, 5), (5, 1), (5, 1), (0, 0)]


def test_the_fleet_prior_of_a_line_with_digits_is_its_better_shared_form() -> None:
    share, stamp, later, friday = "Share this article", "Updated at 08h35", "Updated at 09h00", "Friday edition"
    fleet = {clean.exact_hash(norm(share)): 5, clean.exact_hash(norm(stamp)): 7,
             clean.template_hash(norm(stamp)): 6, clean.template_hash(norm(friday)): 9}
    edition, route = "Edition 42", "Route 9 reopens"  # digits, no masked form in the fleet's counts
    fleet[clean.exact_hash(norm(edition))] = 3
    lines = [share, stamp, later, friday, edition, route]
    stats = clean.lookup_stats(lines, None, {}, {}, set(), False, fleet_counts=fleet)
    assert [st.fleet_sites for st in stats] == [5, 7, 6, 0, 3, 0]
    assert [st.fleet_sites for st in clean.lookup_stats(lines, None, {}, {}, set(), False)] == [0] * 6


def test_a_line_sharing_most_words_with_the_title_is_never_a_slot_template() -> None:
    title = "Council extends the tram line north - City News"
    kicker = "The tram line goes further"  # three of its five words are the title's
    teaser = "The tram goes much further"  # two of five
    lines = [kicker, P0, P1, teaser]
    slots = ["kicker", "body", "body", "kicker"]
    # the kicker slot held prose on exactly a tenth of the site's pages: still a template slot
    counts = {clean.slot_hash("kicker"): 10, clean.slot_prose_hash("kicker"): 1,
              clean.slot_hash("body"): 10, clean.slot_prose_hash("body"): 10}
    stats = clean.lookup_stats(lines, title, {}, {}, set(), False, slots=slots, slot_counts=counts)
    assert [st.title_like for st in stats] == [True, False, False, False]
    assert clean.clean_lines(lines, stats).removed == [(teaser, clean.SLOT)]


# --- forms of a line ----------------------------------------------------------------------------------------


def test_page_lines_are_the_stripped_non_blank_lines() -> None:
    assert clean.page_lines("  First line \n\n \t \nSecond  line\r\n") == ["First line", "Second  line"]
    assert clean.page_lines("") == []


def test_digits_and_labels() -> None:
    assert clean.has_digits("route 9 reopens")
    assert not clean.has_digits("route nine reopens")
    assert clean.line_label("related: tram fares rise") == "related"
    assert clean.line_label("tram fares rise") is None


def test_title_variants_are_the_whole_title_and_its_longest_part() -> None:
    assert clean.title_variants("Budget vote delayed again - The Times") == {
        "budget vote delayed again - the times", "budget vote delayed again"}
    # a part of two words is no headline; three words are
    assert clean.title_variants("Budget passes | Reuters") == {"budget passes | reuters"}
    assert clean.title_variants("Three word title") == {"three word title"}
    assert clean.title_variants("City News") == set()
    assert clean.title_variants("   ") == set()


def test_headline_form_drops_a_bullet_and_a_link_label_before_three_words() -> None:
    assert clean.headline_form(norm("» Harbour wall repairs")) == "harbour wall repairs"
    assert clean.headline_form(norm("Read also: Tram fares rise")) == "tram fares rise"
    assert clean.headline_form(norm("Read also: Fares rise")) == "read also: fares rise"


def test_headline_lines_are_the_candidates_but_the_pages_own_title() -> None:
    lines = ["- Mayor opens new bridge", "Council extends the tram line north", "Tram fares", "Tram fares rise",
             "Read also: Harbour wall repairs begin"]
    others = {"mayor opens new bridge", "tram fares rise", "harbour wall repairs begin"}
    assert clean.headline_lines(lines, "Council extends the tram line north | City News") == others
    assert clean.headline_lines(lines, None) == others | {"council extends the tram line north"}


def test_the_stored_hashes_stay_the_same_across_releases() -> None:
    # The site memories and the fleet prior keep these 6-byte hashes in Redis for weeks: a release that hashed
    # a line, its masked form, its label, a headline or a slot differently would forget every site at once.
    assert clean.exact_hash("follow us").hex() == "d05384391674"
    assert clean.template_hash("updated at 08h35").hex() == "e9380e3f13bd"
    assert clean.label_hash("read more").hex() == "a9185bc9c2b5"
    assert clean.title_hash("mayor opens new bridge").hex() == "d6b280f321b3"
    assert clean.slot_hash("aside-p").hex() == "e44c7b68965f"
    assert clean.slot_prose_hash("article-p").hex() == "55b3d0d90dd6"


def test_a_line_with_an_undecodable_byte_is_hashed() -> None:
    # a page decoded with errors="surrogateescape" keeps a bad byte as a lone surrogate, which UTF-8 refuses
    assert clean.line_hash("caf\udce9").hex() == "29fbe0a52b01"
    assert clean.line_hash("caf\udce9") != clean.line_hash("caf\udce8")
