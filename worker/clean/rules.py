"""Site-level boilerplate cleaning: pure decision logic, no I/O.

A line of extracted text is removed when the evidence says it is part of the site's template rather than
the article: it appeared on other pages of the same site (``site_repeat``), its digit-masked form or its
"Label:" lead-in did (``template``, e.g. "Updated at 08h35"), it is the headline of another article of the
site (``headline``), it repeats within the page (``page_repeat``), it sat in a slot of the page (the element
path of its block) that the site's pages fill with short rotating text and never with prose (``slot``), many
sites repeat it or its masked form (``fleet``: the fleet-wide prior, which cleans a new site's first pages),
or it is a short link-like line wedged between removed lines at the edge of the text (``sidebar``).
Precision comes first: long prose lines need more evidence and must sit in the leading or trailing block of
the text, the position and fleet rules only act there too, and a page that would lose most of its text keeps
its prose.

``worker.clean.memory`` gathers the evidence from Redis; this module only decides.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

_WORD = re.compile(r"\w+")
_DIGITS = re.compile(r"\d+")
_SENTENCE_END = re.compile(r"[.!?…»\"”’)]\s*$")
_CALENDAR = re.compile(
    r"\b(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
    r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?|mon(?:day)?|tue(?:s(?:day)?)?|wed(?:nesday)?|thu(?:rs(?:day)?)?"
    r"|fri(?:day)?|sat(?:urday)?|sun(?:day)?)\b\.?"
)
# "Read more: ...", "- Related: ...": a short lead-in of one to four words (three letters or more, so the
# "Q:"/"A:" of an interview never counts) followed by a colon and more text.
_LABEL = re.compile(r"^[\W_]*([^\W\d_][^\W\d_']{2,}(?:[ '][^\W\d_]+){0,3}):\s+\S")
# Site names glued to a <title>: "Headline - BBC News", "Headline | Reuters".
_TITLE_SEPARATORS = re.compile(r"\s+(?:[-|–—:•»]|::)\s+")

# 6 bytes: a false match needs two of a site's ~10^4 lines in a bucket to share 48 bits (~10^-7 a bucket)
HASH_BYTES = 6

SITE_REPEAT = "site_repeat"
TEMPLATE = "template"
HEADLINE = "headline"
PAGE_REPEAT = "page_repeat"
SIDEBAR = "sidebar"
SLOT = "slot"
FLEET = "fleet"
REASONS = (SITE_REPEAT, TEMPLATE, HEADLINE, PAGE_REPEAT, SLOT, FLEET, SIDEBAR)


# A page's lines are normalised, masked and counted several times over (observe, clean's lookups and
# decisions): the caches make that once. They hold lines of the last few pages only.
@functools.lru_cache(maxsize=4096)
def normalise_line(line: str) -> str:
    """NFKC, case-folded, whitespace collapsed: the identity of a line across pages."""
    # str.split() and the regex \s agree on what whitespace is (both use Unicode's White_Space)
    return " ".join(unicodedata.normalize("NFKC", line).casefold().split())


@functools.lru_cache(maxsize=4096)
def mask_digits(normalised: str) -> str:
    """Every run of digits becomes "0", so "08h35 le 09/04" and "9h05 le 10/04" are one template; English
    month and weekday names become "~" so "Last updated: Friday, 2 September" matches its siblings too."""
    return _CALENDAR.sub("~", _DIGITS.sub("0", normalised))


def has_digits(normalised: str) -> bool:
    """Whether a line has a digit-masked template form worth remembering."""
    return _DIGITS.search(normalised) is not None


def line_label(normalised: str) -> str | None:
    """The label of a "Label: rest" line ("read more", "related", "twitter"), or None."""
    match = _LABEL.match(normalised)
    return match.group(1) if match else None


def line_hash(normalised: str, kind: bytes = b"") -> bytes:
    """``HASH_BYTES``-byte blake2b of a normalised line; ``kind`` keeps exact and masked forms of one line apart."""
    data = normalised.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=HASH_BYTES, person=kind).digest()


# observe and clean hash the same lines of a page: cached like the normalised forms
@functools.lru_cache(maxsize=4096)
def exact_hash(normalised: str) -> bytes:
    return line_hash(normalised, b"exact")


@functools.lru_cache(maxsize=4096)
def template_hash(normalised: str) -> bytes:
    return line_hash(mask_digits(normalised), b"template")


def label_hash(label: str) -> bytes:
    return line_hash(label, b"label")


def title_hash(normalised: str) -> bytes:
    return line_hash(normalised, b"title")


@functools.lru_cache(maxsize=1024)
def slot_hash(slot: str) -> bytes:
    """A slot (``worker.extract.slots``) as remembered: it appeared on a page."""
    return line_hash(slot, b"slot")


@functools.lru_cache(maxsize=1024)
def slot_prose_hash(slot: str) -> bytes:
    """A slot that held a prose line (longer than ``CleanRules.short_words``) on a page."""
    return line_hash(slot, b"slotprose")


def title_variants(title: str) -> set[str]:
    """Normalised forms under which a headline may show up as a line: whole, and without the site name."""
    norm = normalise_line(title)
    if not norm:
        return set()
    variants = {norm}
    parts = [p for p in _TITLE_SEPARATORS.split(norm) if p]
    if len(parts) > 1:
        variants.add(max(parts, key=len))
    return {v for v in variants if word_count(v) >= MIN_HEADLINE_WORDS}


@functools.lru_cache(maxsize=4096)
def word_count(line: str) -> int:
    return len(_WORD.findall(line))


def page_lines(text: str) -> list[str]:
    """The non-blank lines of an extracted text, stripped."""
    return [line.strip() for line in text.split("\n") if line.strip()]


# A one- or two-word headline ("Markets") would also match ordinary subheadings.
MIN_HEADLINE_WORDS = 3
# A line sharing this share of its words with the page's own title is its headline (or a variant of it, with a
# kicker or a subtitle): the headline slot rotates its text on every page like a teaser box does.
TITLE_LIKE_SHARE = 0.6


@dataclass(frozen=True, slots=True)
class LineStats:
    """Evidence about one line from the site memory, not counting the page being cleaned."""

    pages: int = 0  # other pages of the site on which the normalised line appeared
    template_pages: int = 0  # other pages on which its digit-masked form appeared
    headline: bool = False  # equal to the headline of another article of the site
    label_pages: int = 0  # other pages with a line carrying the same "Label:" lead-in
    slot_pages: int = 0  # other pages on which the line's slot (element path of its block) appeared
    slot_prose_pages: int = 0  # other pages on which that slot held a prose line
    fleet_sites: int = 0  # sites on which the line, or its masked form if it has digits, is boilerplate
    title_like: bool = False  # most of its words are the page's own headline's: never removed by position


@dataclass(frozen=True, slots=True)
class CleanRules:
    """Thresholds; the defaults were tuned on the evaluation sets with precision first. ``long_min_pages`` and
    ``slot_min_pages`` are what ``ingest eval big9 --holdout period`` chooses with all three periods as
    development pages (it shows the choice made without each period too)."""

    short_words: int = 15  # lines up to this many words are headline/menu-like
    short_min_pages: int = 2  # other pages a short line must have appeared on
    long_min_pages: int = 2  # other pages a long line (or its masked form) must have appeared on, in an edge block
    template_min_pages: int = 3  # other pages for a digit-masked match of a short line with digits
    label_min_pages: int = 3  # other pages for a "Label: ..." lead-in of a short line
    bare_min_pages: int = 1  # lines without a single word ("| | |") need little evidence
    max_removed_share: float = 0.5  # above this share of words removed, the page is a near-copy: keep prose
    sidebar: bool = True  # remove a short line between two removed lines in an edge block
    slot_min_pages: int = 2  # other pages a slot must have appeared on before its short lines are template
    slot_max_prose_share: float = 0.1  # ...and at most this share of them with prose in it (an article body)
    fleet_min_sites: int = 3  # sites on which a short line must be boilerplate for the fleet-wide prior


@dataclass(frozen=True, slots=True)
class CleanResult:
    """The cleaned text, the removed lines with their reason, and reason counts for the published message."""

    text: str
    removed: list[tuple[str, str]] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)


def _edge_flags(anchors: Sequence[bool]) -> list[bool]:
    """True for lines with no prose anchor before them or none after them: the leading/trailing blocks."""
    n = len(anchors)
    first = next((i for i in range(n) if anchors[i]), n)
    last = next((i for i in range(n - 1, -1, -1) if anchors[i]), -1)
    return [i < first or i > last for i in range(n)]


def decide(
    lines: Sequence[str],
    stats: Sequence[LineStats],
    rules: CleanRules | None = None,
    *,
    keep_long: bool = False,
) -> list[str | None]:
    """The reason to remove each line, or None to keep it. ``stats`` is aligned with ``lines``."""
    rules = rules or CleanRules()
    norms = [normalise_line(line) for line in lines]
    words = [word_count(n) for n in norms]
    in_page = Counter(norms)
    reasons: list[str | None] = [None] * len(lines)
    edge_only: list[str | None] = [None] * len(lines)  # reasons that only hold in a leading/trailing block

    for i, (norm, n_words, st) in enumerate(zip(norms, words, stats, strict=True)):
        short = n_words <= rules.short_words
        if n_words == 0:
            if st.pages >= rules.bare_min_pages or in_page[norm] > 1:
                reasons[i] = SITE_REPEAT
            continue
        if st.headline and short:
            reasons[i] = HEADLINE
        elif short and st.pages >= rules.short_min_pages:
            reasons[i] = SITE_REPEAT
        elif short and _DIGITS.search(norm) and st.template_pages >= rules.template_min_pages:
            reasons[i] = TEMPLATE
        elif short and st.label_pages >= rules.label_min_pages:
            edge_only[i] = TEMPLATE
        elif short and st.fleet_sites >= rules.fleet_min_sites:
            edge_only[i] = FLEET
        elif (short and not st.title_like and st.slot_pages >= rules.slot_min_pages
              and st.slot_prose_pages <= rules.slot_max_prose_share * st.slot_pages):
            edge_only[i] = SLOT
        elif not short and not keep_long and st.pages >= rules.long_min_pages:
            edge_only[i] = SITE_REPEAT
        elif not short and not keep_long and st.template_pages >= rules.long_min_pages:
            edge_only[i] = TEMPLATE  # "© 2006 Cable News Network ... Terms under which ..." and its 2007 sibling
        elif short and in_page[norm] > 1 and (st.pages > 0 or not _SENTENCE_END.search(norm)):
            # Articles repeat sentences of their own (lists, recipes); a repeated link title ends without a
            # full stop, or has been seen elsewhere on the site.
            edge_only[i] = PAGE_REPEAT

    # Prose anchors: long lines nothing speaks against. Boilerplate sits before the first or after the last.
    anchors = [
        w > rules.short_words and r is None and e is None
        for w, r, e in zip(words, reasons, edge_only, strict=True)
    ]
    edge = _edge_flags(anchors)
    for i in range(len(lines)):
        if reasons[i] is None and edge_only[i] is not None and edge[i]:
            reasons[i] = edge_only[i]
    if rules.sidebar:
        # One pass is all there is: a line it removes had both neighbours removed already, so a second pass
        # could find no line with a newly removed neighbour.
        removed = [r is not None for r in reasons]
        for i in range(1, len(lines) - 1):
            if (
                reasons[i] is None
                and edge[i]
                and words[i] <= rules.short_words
                and not _SENTENCE_END.search(norms[i])
                and removed[i - 1]
                and removed[i + 1]
            ):
                reasons[i] = SIDEBAR
    return reasons


def clean_lines(
    lines: Sequence[str],
    stats: Sequence[LineStats],
    rules: CleanRules | None = None,
) -> CleanResult:
    """Apply :func:`decide` and build the result; protects prose when a page would lose most of its words."""
    rules = rules or CleanRules()
    reasons = decide(lines, stats, rules)
    total = sum(word_count(line) for line in lines)
    removed_words = sum(word_count(line) for line, r in zip(lines, reasons, strict=True) if r is not None)
    if total and removed_words > rules.max_removed_share * total:
        # Most of the page "repeats": a near-copy of another article (updates, syndication), not a sidebar.
        reasons = decide(lines, stats, rules, keep_long=True)
    kept = [line for line, r in zip(lines, reasons, strict=True) if r is None]
    removed = [(line, r) for line, r in zip(lines, reasons, strict=True) if r is not None]
    return CleanResult(text="\n".join(kept), removed=removed, reasons=dict(Counter(r for _, r in removed)))


_BULLET = re.compile(r"^[-–—•*·>»▸►]+\s*")


def headline_form(normalised: str) -> str:
    """The part of a line that may be another article's headline: without a list bullet ("- Headline") or
    a short link label ("Read also: Headline"), which CMSs put before the links they embed in a text."""
    form = _BULLET.sub("", normalised)
    match = _LABEL.match(form)
    if match:
        rest = form[match.end(1) + 1 :].strip()
        if word_count(rest) >= MIN_HEADLINE_WORDS:
            return rest
    return form


def headline_lines(lines: Iterable[str], own_title: str | None) -> set[str]:
    """Normalised lines that may be matched against other articles' headlines (not the page's own title)."""
    own = title_variants(own_title) if own_title else set()
    forms = (headline_form(normalise_line(line)) for line in lines)
    return {n for n in forms if word_count(n) >= MIN_HEADLINE_WORDS} - own


def _words(normalised: str) -> set[str]:
    return set(_WORD.findall(normalised))


def lookup_stats(
    lines: Sequence[str],
    own_title: str | None,
    exact_counts: Mapping[bytes, int],
    template_counts: Mapping[bytes, int],
    headlines: set[bytes],
    self_observed: bool,
    label_counts: Mapping[bytes, int] | None = None,
    *,
    slots: Sequence[str] = (),
    slot_counts: Mapping[bytes, int] | None = None,
    fleet_counts: Mapping[bytes, int] | None = None,
    rules: CleanRules | None = None,
) -> list[LineStats]:
    """Per-line evidence from raw memory counts (which include this page when ``self_observed``).
    ``slots`` is aligned with ``lines`` (empty, or "" for a line without one); ``slot_counts`` holds the
    :func:`slot_hash` and :func:`slot_prose_hash` counts; ``fleet_counts`` the sites per exact or template
    hash (the fleet's counts never include this page's site's own share twice: a site shares a line once)."""
    own = 1 if self_observed else 0
    own_forms = title_variants(own_title) if own_title else set()
    title_words = _words(normalise_line(own_title)) if own_title else set()
    labels = label_counts or {}
    slot_n = slot_counts or {}
    fleet = fleet_counts or {}
    rules = rules or CleanRules()
    prose_slots = {s for s, line in zip(slots, lines, strict=False)
                   if s and word_count(normalise_line(line)) > rules.short_words}
    out = []
    for i, line in enumerate(lines):
        norm = normalise_line(line)
        label = line_label(norm)
        digits = has_digits(norm)
        slot = slots[i] if i < len(slots) else ""
        slot_pages = slot_prose = 0
        if slot:
            slot_pages = max(0, slot_n.get(slot_hash(slot), 0) - own)
            slot_prose = max(0, slot_n.get(slot_prose_hash(slot), 0) - (own if slot in prose_slots else 0))
        fleet_sites = fleet.get(exact_hash(norm), 0)
        if digits:
            fleet_sites = max(fleet_sites, fleet.get(template_hash(norm), 0))
        # whether a line is the headline matters only where its slot speaks against it (few lines)
        title_like = False
        if slot_pages and slot_prose <= rules.slot_max_prose_share * slot_pages and (words := _words(norm)):
            title_like = norm in own_forms or len(words & title_words) >= TITLE_LIKE_SHARE * len(words)
        out.append(
            LineStats(
                pages=max(0, exact_counts.get(exact_hash(norm), 0) - own),
                # only lines with digits have a template form (decide looks at no other)
                template_pages=max(0, template_counts.get(template_hash(norm), 0) - own) if digits else 0,
                # the test of headline_lines, line by line (not a second pass over the page)
                headline=((form := headline_form(norm)) not in own_forms and word_count(form) >= MIN_HEADLINE_WORDS
                          and title_hash(form) in headlines),
                label_pages=max(0, labels.get(label_hash(label), 0) - own) if label else 0,
                slot_pages=slot_pages,
                slot_prose_pages=slot_prose,
                fleet_sites=fleet_sites,
                title_like=title_like,
            )
        )
    return out
