"""The feed list: ``config/feeds.yaml`` (or ``INGEST_FEEDS``), validated, re-read when the file changes."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from worker.core.keys import digest
from worker.core.urls import InvalidURL, canonicalize


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
        except InvalidURL as exc:
            raise ValueError(str(exc)) from exc
        return value.strip()

    @property
    def id(self) -> str:
        """Stable id of the feed, from its canonical URL: used in Redis keys instead of the URL itself."""
        return digest(canonicalize(self.url))

    @property
    def label(self) -> str:
        return self.name or self.url


class FeedListError(ValueError):
    """The feeds file is missing or invalid; the message says where."""


def parse_feed_list(data: Any, source: str = "feeds file") -> list[Feed]:
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("feeds", []), list):
        raise FeedListError(f"{source}: expected a mapping with a 'feeds:' list")
    feeds: list[Feed] = []
    seen: set[str] = set()
    for i, item in enumerate(data.get("feeds") or []):
        if isinstance(item, str):
            item = {"url": item}
        try:
            feed = Feed.model_validate(item)
        except ValidationError as exc:
            raise FeedListError(f"{source}: feed #{i + 1}: {exc.errors()[0]['msg']}") from exc
        if feed.id not in seen:  # the same feed listed twice is polled once
            seen.add(feed.id)
            feeds.append(feed)
    return feeds


def load_feeds(path: Path) -> list[Feed]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FeedListError(f"cannot read feeds file {path}: {exc}") from exc
    try:
        # libyaml's loader when present: a 10 000-feed list loads in a fraction of the pure-Python time
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise FeedListError(f"{path}: invalid YAML: {exc}") from exc
    return parse_feed_list(data, str(path))


def save_feeds(path: Path, feeds: list[Feed]) -> None:
    """Write atomically (temp file + rename) so a dispatcher never reads half a file."""
    data = {"feeds": [f.model_dump(exclude_none=True, exclude_defaults=True) | {"url": f.url} for f in feeds]}
    for item in data["feeds"]:
        if "tags" in item:
            item["tags"] = list(item["tags"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".feeds-", suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        yaml.safe_dump(data, out, sort_keys=False, allow_unicode=True)
    os.replace(tmp, path)


@dataclass
class FeedList:
    """The feed list of a path, re-read only when the file's mtime or size changes (cheap to call every tick)."""

    path: Path
    _stamp: tuple[float, int] | None = None
    _feeds: list[Feed] | None = None

    def get(self) -> tuple[list[Feed], bool]:
        """The feeds, and whether they changed since the last call."""
        st = self.path.stat()
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._stamp and self._feeds is not None:
            return self._feeds, False
        self._feeds = load_feeds(self.path)
        self._stamp = stamp
        return self._feeds, True
