"""Pure cleaning rules on small hand-made pages (no Redis): what is removed, what is kept, and why."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from worker.clean import rules as clean
from worker.clean.rules import CleanResult, CleanRules

PROSE = [
    "The city council voted on Tuesday to extend the tram line to the northern districts, a project "
    "first proposed more than a decade ago and repeatedly delayed by disputes over its cost.",
    "Supporters said the extension would cut commuting times for tens of thousands of residents, while "
    "opponents argued that the money would be better spent on repairing the existing bus network.",
    "Construction is expected to begin next spring and to last about three years, according to the "
    "council's transport department, which will publish a detailed timetable in the coming weeks.",
]
BACKGROUND = (
    "The tram network, which opened in 1998, carries around 200,000 passengers a day and is run by a "
    "company owned jointly by the city and the regional government."
)


class Memory:
    """The counting of worker.clean.memory without Redis: distinct pages per hash (lines, their slots, the
    slots that held prose), the site's headlines, and a fleet prior given as sites per line hash."""

    def __init__(self, fleet: dict[bytes, int] | None = None) -> None:
        self.exact: Counter[bytes] = Counter()
        self.template: Counter[bytes] = Counter()
        self.labels: Counter[bytes] = Counter()
        self.slots: Counter[bytes] = Counter()
        self.titles: set[bytes] = set()
        self.pages: set[str] = set()
        self.fleet = fleet or {}

    def observe(self, page_id: str, lines: Sequence[str], title: str | None = None,
                slots: Sequence[str] = ()) -> None:
        if title:
            self.titles |= {clean.title_hash(v) for v in clean.title_variants(title)}
        if page_id in self.pages:
            return
        self.pages.add(page_id)
        norms = {clean.normalise_line(line) for line in lines}
        self.exact.update({clean.exact_hash(n) for n in norms})
        self.template.update({clean.template_hash(n) for n in norms if clean.has_digits(n)})
        self.labels.update({clean.label_hash(lb) for lb in map(clean.line_label, norms) if lb})
        self.slots.update({clean.slot_hash(s) for s in slots if s})
        self.slots.update({clean.slot_prose_hash(s) for s, line in zip(slots, lines, strict=False)
                           if s and clean.word_count(clean.normalise_line(line)) > CleanRules().short_words})

    def clean(self, page_id: str, lines: Sequence[str], title: str | None = None,
              slots: Sequence[str] = ()) -> CleanResult:
        own = {clean.title_hash(v) for v in clean.title_variants(title)} if title else set()
        stats = clean.lookup_stats(
            lines, title, self.exact, self.template, self.titles - own, page_id in self.pages, self.labels,
            slots=slots, slot_counts=self.slots, fleet_counts=self.fleet,
        )
        return clean.clean_lines(lines, stats, CleanRules())


def removed_reasons(result: CleanResult) -> dict[str, str]:
    return {line: why for line, why in result.removed}


def test_normalisation() -> None:
    assert clean.normalise_line("  Ｆollow  us\ton\u00a0WeChat ") == "follow us on wechat"
    assert clean.normalise_line("STRASSE") == clean.normalise_line("straße")
    assert clean.mask_digits("mise à jour à 08h35 le 09/04") == "mise à jour à 0h0 le 0/0"
    assert clean.mask_digits("last updated: friday, 2 september 2005") == "last updated: ~, 0 ~ 0"
    assert len(clean.line_hash("x")) == clean.HASH_BYTES == 6
    assert clean.exact_hash("x") != clean.template_hash("x")
    assert clean.line_label("read more: why trams are back") == "read more"
    assert clean.line_label("q: what inspired you?") is None
    assert clean.line_label("at 10:30 the council met") is None


def test_template_line_with_digits_is_removed() -> None:
    memory = Memory()
    for i in range(4):
        stamp = f"Dernière mise à jour à 0{i}h3{i} le 1{i}/04"
        memory.observe(f"p{i}", [stamp, f"Story {i} " + PROSE[i % 3]])
    page = ["Dernière mise à jour à 08h35 le 09/04", *PROSE]
    memory.observe("new", page)
    result = memory.clean("new", page)
    assert removed_reasons(result) == {page[0]: clean.TEMPLATE}
    assert result.text == "\n".join(PROSE)
    assert result.reasons == {"template": 1}


def test_headline_of_another_article_is_removed_but_not_own_title() -> None:
    memory = Memory()
    memory.observe("other", [PROSE[0]], title="Mayor opens new bridge over the river - City News")
    page = ["Council extends the tram line north", *PROSE, "Mayor opens new bridge over the river"]
    memory.observe("new", page, title="Council extends the tram line north | City News")
    result = memory.clean("new", page, title="Council extends the tram line north | City News")
    assert removed_reasons(result) == {"Mayor opens new bridge over the river": clean.HEADLINE}
    assert result.text.startswith("Council extends the tram line north\n")


def test_repeat_within_page_is_evidence() -> None:
    memory = Memory()
    memory.observe("other", [PROSE[1], "Most read: Tram fares to rise"])
    most_read = "Most read: Tram fares to rise"
    page = [*PROSE, most_read, "Weather warning for the weekend", most_read]
    memory.observe("new", page)
    result = memory.clean("new", page)
    assert [why for _, why in result.removed] == ["page_repeat", "sidebar", "page_repeat"]
    assert result.text == "\n".join(PROSE)


def test_sentence_repeated_in_article_without_other_evidence_is_kept() -> None:
    # Recipes and lists repeat their own sentences; a page on its own proves nothing.
    page = [PROSE[0], "Stir well.", PROSE[1], "Stir well.", PROSE[2], "Serve warm.", "Serve warm."]
    memory = Memory()
    memory.observe("only", page)
    assert memory.clean("only", page).removed == []


def test_reused_background_paragraph_is_kept() -> None:
    memory = Memory()
    for i in range(5):
        memory.observe(f"p{i}", [PROSE[i % 3] + f" ({i})", BACKGROUND, f"Another paragraph number {i} " * 4])
    page = [PROSE[0], BACKGROUND, PROSE[1], PROSE[2]]
    memory.observe("new", page)
    result = memory.clean("new", page)
    assert result.removed == []
    assert BACKGROUND in result.text


def test_long_prose_line_needs_strong_evidence_and_an_edge_position() -> None:
    promo = (
        "Subscribe to our newsletter to receive the most important stories of the day in your inbox every "
        "morning, together with exclusive analysis from our reporters around the world."
    )
    page = [*PROSE, promo]
    # Seen on one other page only: a long line is kept (two articles may share a paragraph).
    memory = Memory()
    memory.observe("a", [PROSE[0] + " a", promo])
    memory.observe("new", page)
    assert memory.clean("new", page).removed == []
    # Seen on more other pages and in the trailing block: boilerplate.
    for i in range(3):
        memory.observe(f"b{i}", [f"{PROSE[1]} {i}", promo])
    result = memory.clean("new", page)
    assert removed_reasons(result) == {promo: clean.SITE_REPEAT}
    # The same line in the middle of kept prose stays.
    middle = [PROSE[0], promo, PROSE[1], PROSE[2]]
    memory.observe("mid", middle)
    assert memory.clean("mid", middle).removed == []


def test_short_site_line_goes_anywhere_bare_lines_need_little_evidence() -> None:
    memory = Memory()
    for i in range(3):
        memory.observe(f"p{i}", ["(Story continues below)", "| | |", f"Paragraph {i} " + PROSE[i]])
    page = [PROSE[0], "(Story continues below)", PROSE[1], "| | |", PROSE[2]]
    memory.observe("new", page)
    result = memory.clean("new", page)
    assert result.reasons == {"site_repeat": 2}
    assert result.text == "\n".join(PROSE)


def test_cold_start_batch_observe_all_then_clean_each() -> None:
    sidebar = [
        "Follow us on WeChat", "Related: Tram fares to rise", "Related: New bridge opens", "© City News",
    ]
    pages = {f"p{i}": [f"Opening paragraph {i}: " + PROSE[i % 3], PROSE[(i + 1) % 3] + f" {i}", *sidebar]
             for i in range(4)}
    memory = Memory()
    for page_id, lines in pages.items():
        memory.observe(page_id, lines)
    for page_id, lines in pages.items():
        result = memory.clean(page_id, lines)
        assert [line for line, _ in result.removed] == sidebar
        assert result.text == "\n".join(lines[:2])


def test_near_copy_page_keeps_its_prose() -> None:
    # The same story published three more times (updates): repeating prose is not a sidebar.
    memory = Memory()
    article = [*PROSE, "Follow us on WeChat"]
    for i in range(4):
        memory.observe(f"copy{i}", article)
    result = memory.clean("copy0", article)
    assert result.text == "\n".join(PROSE)
    assert result.reasons == {"site_repeat": 1}


def test_position_edge_flags() -> None:
    assert clean._edge_flags([False, True, False, True, False]) == [True, False, False, False, True]
    assert clean._edge_flags([False, False]) == [True, True]


def test_headline_behind_a_bullet_or_a_link_label_is_a_link() -> None:
    from worker.clean.rules import headline_form, normalise_line

    headline = "harbour wall repairs begin on monday"
    assert headline_form(normalise_line("- Harbour wall repairs begin on Monday")) == headline
    assert headline_form(normalise_line("Read also: Harbour wall repairs begin on Monday")) == headline
    # a sentence with a colon keeps its whole form unless the rest is itself a headline-length line
    assert headline_form(normalise_line("He said: yes")) == "he said: yes"


BODY, TEASER, SUBHEAD, KICKER = "body-p", "aside-teaser", "body-h2", "header-kicker"


def test_rotating_teaser_in_a_template_slot_is_removed_but_not_the_article() -> None:
    # Each page of the site ends with a teaser box whose text changes every time ("... and we loved it.
    # Photos"): no text repeats, but the slot does, and it never holds prose.
    memory = Memory()
    for i in range(4):
        lines = [f"Paragraph {i} about the tram. " + PROSE[i % 3], f"Subheading number {i}",
                 PROSE[(i + 1) % 3] + f" ({i})", f"We tested teaser gadget number {i} and we loved it. Photos"]
        memory.observe(f"p{i}", lines, slots=[BODY, SUBHEAD, BODY, TEASER])
    short_end = "He said the work would be done by 2030."  # a short last paragraph of the article itself
    page = ["Tram works", *PROSE[:2], "Why the line matters", PROSE[2], short_end,
            "Our critic tried the new folding bike and we loved it. Photos"]
    slots = [KICKER, BODY, BODY, SUBHEAD, BODY, BODY, TEASER]
    memory.observe("new", page, slots=slots)
    result = memory.clean("new", page, title="Council extends the tram line north", slots=slots)
    # the short last paragraph sits in the article's slot (prose on every page): kept; a subheading between
    # paragraphs, in a slot that never holds prose either, is not at an edge: kept; a kicker seen on no other
    # page: kept
    assert removed_reasons(result) == {page[-1]: clean.SLOT}
    # the same line without slots (a message from before slots) is left alone
    assert memory.clean("new", page).removed == []


def test_the_headline_slot_is_never_template_even_when_the_title_is_wrong() -> None:
    memory = Memory()
    for i in range(4):
        memory.observe(f"p{i}", [f"Headline number {i} of the day", PROSE[i % 3] + f" {i}"], slots=["h", BODY])
    page = ["Council extends the tram line north", *PROSE]
    stats = clean.lookup_stats(page, "Council extends the tram line north - City News", {}, {}, set(), False,
                               slots=["h", BODY, BODY, BODY], slot_counts=memory.slots)
    assert stats[0].slot_pages == 4 and stats[0].title_like
    assert clean.clean_lines(page, stats).removed == []


def test_fleet_prior_cleans_a_first_page_at_its_edges_only() -> None:
    share, comments = "Share this article", "Comments"
    date_line = "Friday, September 18, 2009"
    fleet = {clean.exact_hash(clean.normalise_line(share)): 5, clean.exact_hash(clean.normalise_line(comments)): 3,
             clean.template_hash(clean.normalise_line("Monday, March 2, 2015")): 4}
    page = [date_line, PROSE[0], share, PROSE[1], PROSE[2], comments]
    memory = Memory(fleet)
    memory.observe("first", page)
    result = memory.clean("first", page)
    # the date through its masked form and the trailing "Comments"; the line between paragraphs stays
    assert result.removed == [(date_line, clean.FLEET), (comments, clean.FLEET)]
    assert result.reasons == {"fleet": 2}
    # boilerplate on two sites only: not enough
    fleet[clean.exact_hash(clean.normalise_line(comments))] = 2
    assert [line for line, _ in Memory(fleet).clean("first", page).removed] == [date_line]


def test_long_template_line_at_the_edge() -> None:
    memory = Memory()
    footer = ("© {} Cable News Network LP, LLLP. A Time Warner Company. All Rights Reserved. Terms under which "
              "this service is provided to you. Read our privacy guidelines.")
    for i in range(3):
        memory.observe(f"p{i}", [PROSE[i], footer.format(2003 + i)])
    page = [*PROSE, footer.format(2007)]
    memory.observe("new", page)
    assert removed_reasons(memory.clean("new", page)) == {page[-1]: clean.TEMPLATE}
