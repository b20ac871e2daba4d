"""The feed list: ``config/feeds.yaml`` (or ``INGEST_FEEDS``), validated entry by entry, re-read when the file
changes.

A list of thousands of feeds, edited by many people or imported, always has a bad line: one bad entry is
reported (file, line, entry number, what is wrong) and skipped, never a reason to poll nothing. Only a file that
cannot be read or parsed at all is an error (``FeedListError``). Skipped entries are kept as written when a
command edits the list, so ``ingest feeds add`` never deletes what someone still has to fix.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from worker.core.keys import digest
from worker.core.urls import InvalidURL, canonicalize, redact_url

# libyaml's loader when present: a 10 000-feed list loads in a fraction of the pure-Python time
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Feed(BaseModel):
    """One feed of the list and its own settings. ``route`` names a downstream stream that this feed's
    articles always go to; ``interval`` pins the poll interval (otherwise it adapts to how often the feed
    publishes, within ``min_interval``..``max_interval``, which narrow the global bounds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    name: str | None = None
    enabled: bool = True
    interval: float | None = Field(default=None, gt=0, description="fixed seconds between polls")
    min_interval: float | None = Field(default=None, gt=0)
    max_interval: float | None = Field(default=None, gt=0)
    tags: tuple[str, ...] = ()
    route: str | None = None
    language: str | None = None
    robots: bool = True  # obey robots.txt for this feed's article pages
    retry_after_scope: Literal["feed", "host"] | None = None  # None: the global setting

    @model_validator(mode="after")
    def _bounds(self) -> Feed:
        if self.min_interval and self.max_interval and self.min_interval > self.max_interval:
            raise ValueError("min_interval is larger than max_interval")
        return self

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            canonicalize(value)
        except InvalidURL as exc:  # the message quotes the URL: never a password in it (it is shown and logged)
            raise ValueError(str(exc).replace(value, redact_url(value))) from exc
        return value.strip()

    @property
    def id(self) -> str:
        """Stable id of the feed, from its canonical URL: used in Redis keys instead of the URL itself."""
        return digest(canonicalize(self.url))

    @property
    def label(self) -> str:
        return self.name or self.url


class FeedListError(ValueError):
    """The feeds file cannot be read or parsed at all; the message says where."""


def validation_message(exc: ValidationError) -> str:
    """Every problem pydantic found, as ``field: what is wrong`` joined by ``; ``."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        what = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            what = "unknown field"
        parts.append(f"{where}: {what}" if where else what)
    return "; ".join(parts)


@dataclass(frozen=True)
class Problem:
    """An entry of the list that is skipped, with where it is and what is wrong. ``raw`` is the entry as
    written, put back unchanged when the list is saved."""

    source: str
    entry: int  # 1-based position in the ``feeds:`` list
    message: str
    line: int | None = None  # 1-based line of the file where the entry starts
    raw: Any = None

    @property
    def url(self) -> str | None:
        raw = self.raw.get("url") if isinstance(self.raw, dict) else self.raw
        return raw.strip() if isinstance(raw, str) else None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: feed #{self.entry}: {self.message}"


Entry = Feed | Problem


@dataclass(frozen=True)
class CheckedList:
    """A feed list read leniently: every entry in file order, each a ``Feed`` or the ``Problem`` that skips it."""

    entries: list[Entry] = field(default_factory=list)

    @property
    def feeds(self) -> list[Feed]:
        return [e for e in self.entries if isinstance(e, Feed)]

    @property
    def problems(self) -> list[Problem]:
        return [e for e in self.entries if isinstance(e, Problem)]


def parse_feed_list(data: Any, source: str = "feeds file", lines: Sequence[int | None] = ()) -> CheckedList:
    """Validate each entry on its own. ``lines`` gives each entry's line in the file, when known. Raises
    FeedListError only when the document is not a mapping with a ``feeds:`` list."""
    if data is None:
        return CheckedList()
    if not isinstance(data, dict) or not isinstance(data.get("feeds", []), list | None):
        raise FeedListError(f"{source}: expected a mapping with a 'feeds:' list")
    entries: list[Entry] = []
    first: dict[str, int] = {}
    for i, item in enumerate(data.get("feeds") or []):
        line = lines[i] if i < len(lines) else None
        if isinstance(item, str):
            item_data: Any = {"url": item}
        elif isinstance(item, dict):
            item_data = item
        else:
            entries.append(Problem(source, i + 1, "expected a mapping with 'url:' or a URL", line, item))
            continue
        try:
            feed = Feed.model_validate(item_data)
        except ValidationError as exc:
            entries.append(Problem(source, i + 1, validation_message(exc), line, item))
            continue
        if feed.id in first:  # the same feed listed twice is polled once, with its first listing's settings
            entries.append(Problem(source, i + 1, f"same feed as feed #{first[feed.id]}, this listing is ignored",
                                   line, item))
            continue
        first[feed.id] = i + 1
        entries.append(feed)
    return CheckedList(entries)


def _entry_lines(text: str) -> list[int | None]:
    """The line where each entry of ``feeds:`` starts (parsed again with positions: only when an entry is bad)."""
    root = yaml.compose(text, Loader=_LOADER)
    if not isinstance(root, yaml.MappingNode):
        return []
    for key_node, value in root.value:
        if key_node.value == "feeds" and isinstance(value, yaml.SequenceNode):
            return [node.start_mark.line + 1 for node in value.value]
    return []


def read_feed_list(path: Path) -> CheckedList:
    """The list at ``path``, bad entries reported and skipped. Raises FeedListError when the file is missing,
    unreadable, not YAML, or not a ``feeds:`` list."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise FeedListError(f"feeds file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise FeedListError(f"cannot read feeds file {path}: {exc}") from exc
    try:
        data = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise FeedListError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from exc
    checked = parse_feed_list(data, str(path))
    if checked.problems:
        checked = parse_feed_list(data, str(path), _entry_lines(text))
    return checked


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where (PyYAML's own message spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(problem)


def load_feeds(path: Path) -> list[Feed]:
    """The feeds of ``path``, strictly: any bad entry raises FeedListError naming every one."""
    checked = read_feed_list(path)
    if checked.problems:
        raise FeedListError("; ".join(str(p) for p in checked.problems))
    return checked.feeds


def save_feeds(path: Path, entries: Sequence[Entry]) -> None:
    """Write atomically (temp file + rename) so a dispatcher never reads half a file. A ``Problem`` is written
    back as its entry was."""
    out_entries: list[Any] = []
    for entry in entries:
        if isinstance(entry, Problem):
            out_entries.append(entry.raw)
            continue
        item = entry.model_dump(exclude_none=True, exclude_defaults=True) | {"url": entry.url}
        if "tags" in item:
            item["tags"] = list(item["tags"])
        out_entries.append(item)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".feeds-", suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        yaml.safe_dump({"feeds": out_entries}, out, sort_keys=False, allow_unicode=True)
    os.replace(tmp, path)


_NEVER = (-1.0, -1)  # a stamp no file has: the first call always reads


@dataclass
class FeedList:
    """The feed list of a path, re-read only when the file's mtime or size changes (cheap to call every tick)."""

    path: Path
    _stamp: tuple[float, int] | None = _NEVER
    _checked: CheckedList | None = None

    def get(self) -> tuple[list[Feed], bool]:
        """The valid feeds, and whether the file changed since the last call. A file that cannot be read at all
        raises FeedListError once per change of it; later calls give the last good list, unchanged."""
        try:
            st = self.path.stat()
            stamp: tuple[float, int] | None = (st.st_mtime, st.st_size)
        except OSError:
            stamp = None  # missing: read_feed_list says so
        if stamp == self._stamp:
            return self.feeds, False
        self._stamp = stamp
        self._checked = read_feed_list(self.path)
        return self.feeds, True

    @property
    def feeds(self) -> list[Feed]:
        return self._checked.feeds if self._checked is not None else []

    @property
    def problems(self) -> list[Problem]:
        """The skipped entries of the last good reading."""
        return self._checked.problems if self._checked is not None else []
