"""Where each line of an extracted text sat in the page: the slot of its block, for the cleaning's template
memory by position (``worker.clean``).

A slot is the element path of the block a line came from, each step its tag with its id and classes, digits
masked (``html/body/div#main/aside.promo-0/p``), hashed to 16 hex characters. Pages of one site come from a few
templates, so a teaser box whose text rotates keeps its slot from page to page while its text differs.

trafilatura's output is a new tree without the page's structure, so lines are mapped back to the parsed source
tree by their text: the page's text nodes are joined in document order (whitespace collapsed, as trafilatura
does) and each line's start is looked up from where the previous one was found. One pass over the tree and a
``str.find`` per line (~1 ms a page on the evaluation pages); a line not found (text trafilatura rewrote) has
no slot.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Sequence
from typing import Any

# Elements that do not make a block of their own: a line found in one belongs to its nearest other ancestor.
_INLINE = frozenset({
    "a", "abbr", "b", "bdi", "bdo", "big", "br", "cite", "code", "data", "del", "dfn", "em", "font", "i", "img",
    "ins", "kbd", "label", "mark", "nobr", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "sup",
    "time", "tt", "u", "var", "wbr",
})
# Text that never reaches trafilatura's output (and <title>, which would otherwise match the headline line).
_SKIP = frozenset(["script", "style", "noscript", "template", "svg", "title", "textarea", "select", "option"])
_DIGITS = re.compile(r"\d+")
# trafilatura writes table rows as "| cell | cell |" and list items as "- item"; a cell's own pipes as "\|".
_LEAD = re.compile(r"^[\s|\-•*]+")
_CELL = re.compile(r"\s\|(?:\s|$)")
PROBE_CHARS = 32  # enough to be unique in a page, short enough to stay inside the line's first text node

NO_SLOT = ""


def _index(tree: Any) -> tuple[str, list[int], list[Any], list[bool]]:
    """The page's text in document order without whitespace; where each text node starts in it, the element
    it is the text or the tail of, and which of the two (a tail belongs to the element's parent).

    Whitespace is dropped rather than collapsed: trafilatura puts a space between inline elements where the
    page has a line break and none where it has none ("<b>O</b>n"), so only the other characters compare."""
    parts: list[str] = []
    starts: list[int] = []
    owners: list[Any] = []
    tails: list[bool] = []
    pos = 0
    # One loop over ~700 elements a page, the module's whole cost: written out for text and tail.
    for el in tree.iter():
        raw = el.text
        if raw and not raw.isspace():
            tag = el.tag
            if tag.__class__ is str and tag not in _SKIP:  # a comment's or PI's tag is a function
                chunk = "".join(raw.split())
                starts.append(pos)
                owners.append(el)
                tails.append(False)
                parts.append(chunk)
                pos += len(chunk)
        raw = el.tail
        if raw and not raw.isspace():
            chunk = "".join(raw.split())
            starts.append(pos)
            owners.append(el)
            tails.append(True)
            parts.append(chunk)
            pos += len(chunk)
    return "".join(parts), starts, owners, tails


def _probe(line: str) -> str:
    """The start of a line as it reads in the page, without whitespace: no table or list markers, one cell."""
    text = _LEAD.sub("", line[:400])  # a paragraph can be long; its first characters are enough
    text = _CELL.split(text, 1)[0].replace("\\|", "|")
    return "".join(text.split())[:PROBE_CHARS]


def _step(el: Any) -> str:
    step: str = el.tag
    ident = el.get("id")
    if ident:
        step += "#" + _DIGITS.sub("0", ident.strip())
    classes = el.get("class")
    if classes:
        step += "." + ".".join(_DIGITS.sub("0", c) for c in classes.split())
    return step


def _path(el: Any, cache: dict[Any, str]) -> str:
    path = cache.get(el)
    if path is None:
        parent = el.getparent()
        path = _step(el) if parent is None else _path(parent, cache) + "/" + _step(el)
        cache[el] = path
    return path


def slot_id(path: str) -> str:
    """16 hex characters standing for an element path (what messages carry and the memory hashes)."""
    return hashlib.blake2b(path.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def _blocks(tree: Any, lines: Sequence[str]) -> list[Any]:
    """The block element each line came from in ``tree`` (the parsed page), None where it is not found."""
    if tree is None or not lines:
        return [None] * len(lines)
    text, starts, owners, tails = _index(tree)
    out: list[Any] = []
    cursor = 0
    for line in lines:
        probe = _probe(line)
        if not probe:
            out.append(None)
            continue
        # lines come in document order, so the next match is normally after the previous one
        at = text.find(probe, cursor)
        if at < 0:
            at = text.find(probe)
        if at < 0 and len(probe) > 12:  # trafilatura rewrote something further in (an entity, a dash)
            at = text.find(probe[:12], cursor)
        if at < 0:
            out.append(None)
            continue
        cursor = at + 1
        node = bisect.bisect_right(starts, at) - 1
        el = owners[node].getparent() if tails[node] else owners[node]
        while el.tag.__class__ is not str or el.tag in _INLINE:
            parent = el.getparent()
            if parent is None:
                break
            el = parent
        out.append(el)
    return out


def line_paths(tree: Any, lines: Sequence[str]) -> list[str | None]:
    """The element path of each line's block in ``tree`` (the parsed page), None where the line is not found."""
    cache: dict[Any, str] = {}
    return [None if el is None else _path(el, cache) for el in _blocks(tree, lines)]


def line_slots(tree: Any, lines: Sequence[str]) -> tuple[str, ...]:
    """Per line, the slot id of its block (:func:`slot_id` of its path), ``NO_SLOT`` where unknown.

    A line in the page's ``<h1>`` has none: that is the page's own headline, whose text changes on every page
    like a rotating teaser's (and the extracted title does not always say which line it is)."""
    cache: dict[Any, str] = {}
    ids: dict[str, str] = {}
    out = []
    for el in _blocks(tree, lines):
        if el is None or el.tag == "h1":
            out.append(NO_SLOT)
            continue
        path = _path(el, cache)
        sid = ids.get(path)
        if sid is None:
            sid = ids[path] = slot_id(path)
        out.append(sid)
    return tuple(out)
