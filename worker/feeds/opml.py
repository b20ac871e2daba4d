"""OPML feed lists <-> ``Feed`` objects: read what other feed readers export, write OPML 2.0 they import.

Reading: ``<outline>`` elements with an ``xmlUrl`` are feeds (``text``, else ``title``, is the name); outlines
without one are folders, and every enclosing folder's title becomes a tag, as does each part of the OPML 2.0
``category`` attribute (comma-separated lists of slash-delimited paths: ``"/News/World,tech"`` gives ``News``,
``World`` and ``tech``). Per-feed settings travel as further outline attributes (``SETTING_ATTRIBUTES``), which
OPML permits and other readers ignore. A bad entry is reported and skipped; only a document that is not OPML at
all (not XML, entity tricks, no ``<body>``) raises ``OpmlError``.

The parser never resolves entities, loads no DTD and touches no network, so XXE and entity-expansion ("billion
laughs") documents fail cleanly; a document that declares entities is refused outright, since OPML needs none.
Input is bytes: the XML declaration (or BOM) says how they are encoded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from pydantic import ValidationError

from worker.feeds.feedlist import Feed

__all__ = ["SETTING_ATTRIBUTES", "OpmlError", "OpmlImport", "parse_opml", "to_opml", "unexportable_tags"]

# Feed field -> outline attribute, for the per-feed settings beyond name, URL and tags. ``language`` is a
# standard OPML attribute; the others are ours (camelCase, like OPML's own ``xmlUrl``/``htmlUrl``).
SETTING_ATTRIBUTES: dict[str, str] = {
    "language": "language",
    "enabled": "enabled",
    "interval": "interval",
    "min_interval": "minInterval",
    "max_interval": "maxInterval",
    "route": "route",
    "robots": "robots",
    "retry_after_scope": "retryAfterScope",
}
_FIELD_OF_ATTRIBUTE = {attr.lower(): name for name, attr in SETTING_ATTRIBUTES.items()}
_ATTRIBUTE_OF_FIELD = {"url": "xmlUrl", "name": "text", "tags": "category", **SETTING_ATTRIBUTES}
_TAG_SEPARATORS = (",", "/")
_MAX_WHAT = 200


class OpmlError(ValueError):
    """The document as a whole is unusable (not XML, not OPML, entity declarations)."""


@dataclass(frozen=True)
class OpmlImport:
    feeds: list[Feed]  # in document order, one per feed id
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (which entry, why) for each entry left out


def parse_opml(data: bytes) -> OpmlImport:
    """The feeds of an OPML 1.0/2.0 document. A feed listed twice (say, in two folders) is kept once, with the
    tags of every listing."""
    root = _parse_xml(data)
    if etree.QName(root).localname.lower() != "opml":
        raise OpmlError(f"not an OPML document: the root element is <{etree.QName(root).localname}>")
    body = next((child for child in _elements(root) if etree.QName(child).localname.lower() == "body"), None)
    if body is None:
        raise OpmlError("not an OPML document: no <body>")
    feeds: dict[str, Feed] = {}
    skipped: list[tuple[str, str]] = []
    _walk(body, (), feeds, skipped)
    return OpmlImport(feeds=list(feeds.values()), skipped=skipped)


def _parse_xml(data: bytes) -> Any:
    if not isinstance(data, bytes | bytearray):
        raise TypeError("parse_opml takes bytes, so that the document's own encoding declaration applies")
    if not data.strip():
        raise OpmlError("the OPML document is empty")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                             huge_tree=False, remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(bytes(data), parser)
    except etree.XMLSyntaxError as exc:
        raise OpmlError(f"not well-formed XML: {exc}") from exc
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise OpmlError("the document declares XML entities, which OPML never needs; refused")
    return root


def _elements(parent: Any) -> Iterable[Any]:
    return (child for child in parent if isinstance(child.tag, str))


def _walk(parent: Any, folders: tuple[str, ...], feeds: dict[str, Feed], skipped: list[tuple[str, str]]) -> None:
    for node in _elements(parent):
        if etree.QName(node).localname.lower() != "outline":
            continue
        # Generators disagree on case (xmlUrl, xmlURL, xmlurl): attribute names are matched case-insensitively.
        attrs = {str(key).lower(): str(value).strip() for key, value in node.attrib.items()}
        label = attrs.get("text") or attrs.get("title") or ""
        url = attrs.get("xmlurl", "")
        children = [c for c in _elements(node) if etree.QName(c).localname.lower() == "outline"]
        if not url:
            if children:
                _walk(node, (*folders, label) if label else folders, feeds, skipped)
            else:
                skipped.append(((label or "(untitled outline)")[:_MAX_WHAT], "no xmlUrl: not a feed"))
            continue
        feed = _feed(url, label, attrs, folders, skipped)
        if feed is not None:
            known = feeds.get(feed.id)
            if known is None:
                feeds[feed.id] = feed
            else:
                skipped.append((url[:_MAX_WHAT], "listed more than once: kept the first, with every listing's tags"))
                feeds[feed.id] = known.model_copy(update={"tags": _unique((*known.tags, *feed.tags))})
        if children:  # rare, but some outliners nest notes or more feeds under a feed
            _walk(node, folders, feeds, skipped)


def _feed(url: str, label: str, attrs: dict[str, str], folders: tuple[str, ...],
          skipped: list[tuple[str, str]]) -> Feed | None:
    categories = [part.strip() for item in attrs.get("category", "").split(",") for part in item.split("/")]
    item: dict[str, Any] = {
        "url": url,
        # an exported feed without a name carries its URL as text (OPML requires one); that is no name
        "name": label if label and label != url else None,
        "tags": _unique((*folders, *categories)),
    }
    for attr, value in attrs.items():
        if attr in _FIELD_OF_ATTRIBUTE and value:
            item[_FIELD_OF_ATTRIBUTE[attr]] = value  # pydantic converts "300" and "false" and says what is wrong
    try:
        return Feed.model_validate(item)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = _ATTRIBUTE_OF_FIELD.get(str(error["loc"][0]), str(error["loc"][0])) if error["loc"] else "outline"
        skipped.append((url[:_MAX_WHAT], f"{where}: {str(error['msg']).removeprefix('Value error, ')}"))
        return None


def _unique(tags: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(tag for tag in tags if tag))


def to_opml(feeds: Iterable[Feed], title: str = "news-ingest-worker feeds") -> bytes:
    """OPML 2.0, UTF-8, one flat ``<outline type="rss">`` per feed with its tags in ``category`` and every
    setting that differs from the default as an attribute. No date in the head: the same list exports to the
    same bytes, so a feed list kept in version control diffs cleanly."""
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = title
    body = etree.SubElement(root, "body")
    defaults = {name: info.default for name, info in Feed.model_fields.items()}
    for feed in feeds:
        outline = etree.SubElement(body, "outline", text=feed.name or feed.url, type="rss", xmlUrl=feed.url)
        if feed.name:
            outline.set("title", feed.name)
        if feed.tags:
            outline.set("category", ",".join(feed.tags))
        for name, attr in SETTING_ATTRIBUTES.items():
            value = getattr(feed, name)
            if value is not None and value != defaults[name]:
                outline.set(attr, _attribute_text(value))
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def _attribute_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def unexportable_tags(feed: Feed) -> list[str]:
    """Tags that ``category`` cannot carry whole (they contain its separators): they come back split."""
    return [tag for tag in feed.tags if any(sep in tag for sep in _TAG_SEPARATORS)]
