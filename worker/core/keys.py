"""Redis key names. Every part that comes from the outside world (sites, feed URLs) is escaped or hashed here,
so untrusted feed content can never forge or collide with another key.

On a Redis Cluster (``INGEST_REDIS_CLUSTER``) the keys one Lua script or one MULTI touches together carry the
same hash tag, so they live in one slot: a host's or a site's keys are tagged with the site
(``ingest:host:{example.com}:slots``), a run's with its id, an article's claim with the slot group of its id
(shared with its "published" bucket), the same-story index with one tag. On a single node no key carries a
tag: the names are those of earlier releases, so an upgrade keeps every key."""

from __future__ import annotations

import hashlib
import re

from worker.core.settings import get_settings

_UNSAFE = re.compile(r"[^a-z0-9.\-]")


def prefix() -> str:
    return get_settings().key_prefix


def digest(value: str, size: int = 16) -> str:
    return hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=size // 2).hexdigest()


def site_part(site: str) -> str:
    """A site name safe inside a key: lower-case hostname characters kept, anything else percent-escaped."""
    site = site.lower()[:253]
    return _UNSAFE.sub(lambda m: f"%{ord(m.group(0)) & 0xFF:02x}", site)


def key(*parts: str, tag: str | None = None) -> str:
    """``key("feed", digest(url))`` -> ``ingest:feed:<digest>``; parts must already be safe. ``tag``: on a
    cluster, the key's slot is that of ``tag`` (``ingest:{tag}:feed:...``); on one node it is left out."""
    if tag is not None and get_settings().redis_cluster:
        return ":".join((prefix(), f"{{{tag}}}", *parts))
    return ":".join((prefix(), *parts))


def tagged(part: str) -> str:
    """A key part that decides the key's slot on a cluster (``{part}``), and is the plain part on one node:
    ``key("host", tagged(site_part(host)), "slots")``. Parts are already safe: none holds a brace."""
    return f"{{{part}}}" if get_settings().redis_cluster else part


# The ids of a compact set (``worker.dedup.buckets``) and the claims of articles fall into this many slot
# groups by their top bits: a group's keys (every generation's bucket of those ids, the claims) share a slot.
SLOT_GROUP_BITS = 12


def slot_group(h: int) -> str:
    """The slot group of a 64-bit id hash (its top ``SLOT_GROUP_BITS`` bits), as a tag."""
    return format(h >> (64 - SLOT_GROUP_BITS), "03x")


def stream_tag(stream: str) -> str:
    """What decides a stream's slot on a cluster: its own hash tag if its name has one, else its whole name;
    a key tagged with it lives beside the stream."""
    start = stream.find("{")
    if start >= 0:
        end = stream.find("}", start + 1)
        if end > start + 1:
            return stream[start + 1 : end]
    return stream
