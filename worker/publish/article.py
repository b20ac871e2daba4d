"""The published article: one JSON message per article, described by ``worker/publish/schema/article.schema.json``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class FeedRef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    url: str
    name: str | None = None
    tags: list[str] = Field(default_factory=list)


class Cleaning(BaseModel):
    """What site-level cleaning removed, for audit: line count and count per reason."""

    removed: int = 0
    reasons: dict[str, int] = Field(default_factory=dict)


class Article(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    id: str
    url: str
    canonical_url: str
    feed: FeedRef
    site: str
    title: str
    text: str
    published: str | None
    language: str | None
    fetched_at: str
    author: str | None = None
    site_name: str | None = None
    description: str | None = None
    summary: str | None = None
    tags: list[str] = Field(default_factory=list)
    cleaning: Cleaning = Field(default_factory=Cleaning)
    duplicate_of: str | None = None
    duplicate_reason: str | None = None

    def message(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
