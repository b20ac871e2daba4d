"""Redis key names. Every part that comes from the outside world (sites, feed URLs) is escaped or hashed here,
so untrusted feed content can never forge or collide with another key."""

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


def key(*parts: str) -> str:
    """``key("feed", digest(url))`` -> ``ingest:feed:<digest>``; parts must already be safe."""
    return ":".join((prefix(), *parts))
