"""Main-text and metadata extraction from an article page with trafilatura, in one HTML parse.

The pipeline and the evaluation (``worker.cli.evaluate``) both call :func:`extract_page`, so the options
chosen here are the ones that were measured.

Metadata comes from trafilatura's own metadata functions, called selectively (:func:`_metadata`): its full
pass also collects categories and tags (which no article field carries) and always runs htmldate, and that
cost ~40 % of a page's extraction time (ops/bench/throughput.py). tests/test_extract.py checks the fields
still agree with ``trafilatura.extract_metadata``.
"""

from __future__ import annotations

import contextlib
import logging
import unicodedata
from dataclasses import dataclass
from typing import Any

import lxml.etree
import lxml.html
import trafilatura
import trafilatura.utils
from htmldate import find_date
from trafilatura import metadata as tm
from trafilatura.settings import Document, set_date_params
from trafilatura.utils import load_html

from worker.extract.byline import body_author
from worker.extract.slots import line_slots

# trafilatura logs every discarded page at WARNING; a short or empty page is an expected outcome here.
logging.getLogger("trafilatura").setLevel(logging.ERROR)

# lxml.html picks each element's Python class with a Python callback (HtmlElementClassLookup), called for
# every element proxy trafilatura touches (~2 300 a page); it only adds form classes that trafilatura never
# uses. A C-level lookup giving every element HtmlElement makes extraction ~4 % cheaper with the same output
# (tests/test_extract.py, tests/test_byline.py). trafilatura parses every page with this one parser.
trafilatura.utils.HTML_PARSER.set_element_class_lookup(lxml.etree.ElementDefaultClassLookup(
    element=lxml.html.HtmlElement, comment=lxml.html.HtmlComment, pi=lxml.html.HtmlProcessingInstruction,
    entity=lxml.html.HtmlEntity))

# Measured on the evaluation sets (worker.cli.evaluate): fast=True (no readability/justext fallback) raised big9
# F1 from 0.963 to 0.966 and aeb from 0.959 to 0.963, and halves the time; comments are never article text and
# carry much of a page's repeated noise; favor_precision / favor_recall both scored lower F1, so they stay off.
EXTRACT_OPTIONS: dict[str, Any] = {
    "fast": True,
    "include_comments": False,
    "include_tables": True,
    "include_images": False,
    "include_links": False,
    "favor_precision": False,
    "favor_recall": False,
    "with_metadata": False,  # see _metadata
}


@dataclass(frozen=True, slots=True)
class Extracted:
    """What the pipeline keeps of a page: metadata plus the main text, one paragraph per line."""

    title: str | None
    author: str | None
    date: str | None  # ISO 8601 date as trafilatura/htmldate found it
    language: str | None
    sitename: str | None
    description: str | None
    text: str
    # per line of ``text``, the slot its block sat in (worker.extract.slots; "" where unknown)
    slots: tuple[str, ...] = ()


def _clean_field(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _paragraph_lines(text: str) -> str:
    # NFC like trafilatura.extract's own text output; blank lines carry no meaning downstream.
    text = unicodedata.normalize("NFC", text)
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def _declared_language(tree: Any) -> str | None:
    """The page's declared language (``<html lang>``, else Content-Language meta), as a primary subtag."""
    value = tree.get("lang") or tree.get("{http://www.w3.org/XML/1998/namespace}lang")
    if not value:
        metas = tree.xpath('//meta[translate(@http-equiv, "CONTENTLAUG", "contentlaug")="content-language"]/@content')
        value = metas[0] if metas else None
    if not value:
        return None
    primary = str(value).strip().replace("_", "-").split("-")[0].split(",")[0].lower()
    return primary if primary.isalpha() and 2 <= len(primary) <= 3 else None


def _metadata(tree: Any, url: str | None, date_search: bool, deep_dates: bool) -> Document:
    """trafilatura's metadata pass (``trafilatura.metadata.extract_metadata``) without categories and tags,
    and without htmldate when the caller already knows the date. The byline search in the page's body
    (``worker.extract.byline``) is left to the caller: it is only worth running once text extraction found an
    article."""
    meta = tm.examine_meta(tree)
    if meta.author and " " not in meta.author:  # as trafilatura: a single word is a handle, not a name
        meta.author = None
    with contextlib.suppress(Exception):  # its JSON-LD reader raises on odd documents; the meta tags count
        meta = tm.extract_meta_json(tree, meta)
    if not meta.title:
        meta.title = tm.extract_title(tree)
    if not meta.url:
        meta.url = tm.extract_url(tree, url)
    if not meta.sitename:
        meta.sitename = tm.extract_sitename(tree)
    if meta.sitename:
        meta.sitename = meta.sitename.lstrip("@")
        if meta.sitename and "." not in meta.sitename and not meta.sitename[0].isupper():
            meta.sitename = meta.sitename.title()
    elif meta.url and (m := tm.META_URL.match(meta.url)):
        meta.sitename = m[1]
    if date_search:
        meta.date = find_date(tree, **(set_date_params(deep_dates) | {"url": meta.url}))
    return meta


def extract_page(html: str | bytes, url: str | None = None, *, date_search: bool = True,
                 deep_date_search: bool = True) -> Extracted | None:
    """Extract the article of ``html``; ``None`` when trafilatura finds no usable main text.

    ``date_search=False`` skips htmldate (the caller has the date from the feed entry); otherwise the
    extensive search runs unless ``deep_date_search`` is False (~8 ms a page, 50 ms on old pages)."""
    if not html:
        return None
    try:
        tree = load_html(html)
        if tree is None:
            return None
        declared_language = _declared_language(tree)
        meta = _metadata(tree, url, date_search, deep_date_search)
        document = trafilatura.bare_extraction(tree, url=url, **EXTRACT_OPTIONS)
        if isinstance(document, Document) and not meta.author:
            meta.author = body_author(tree)
        meta.clean_and_trim()  # trafilatura's own final step: whitespace and HTML entities in every field
    except Exception:  # trafilatura and lxml raise assorted errors on malformed markup
        return None
    if not isinstance(document, Document):
        return None
    text = _paragraph_lines(document.text or "")
    if not text:
        return None
    try:
        slots = line_slots(tree, text.split("\n"))
    except Exception:  # the text is what matters; a page whose structure defeats the mapping has no slots
        slots = ()
    return Extracted(
        title=_clean_field(meta.title),
        author=_clean_field(meta.author),
        date=_clean_field(meta.date),
        language=_clean_field(meta.language) or declared_language,
        sitename=_clean_field(meta.sitename),
        description=_clean_field(meta.description),
        text=text,
        slots=slots,
    )
