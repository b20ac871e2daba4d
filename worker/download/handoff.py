"""The page's hand-off from the download stage to the extract stage: the body, compressed, in one Redis hash
per article that expires (``page_ttl``), so the broker's messages stay small and a backlog cannot grow Redis
without bound.

The hash also keeps what the extract message says of the download (final URL, charset, time), so a download
task redelivered after it had handed the page on sends the extract message again without fetching the page a
second time. The extract stage deletes the hash when it is done; an expired one makes it download again.

Every stored page is also indexed by the time it was handed over (``pages:handed``). kombu's Redis transport
pops a message and only then records it as unacknowledged: a worker killed in between loses that message.
``overdue`` finds the pages whose extract message has not finished after a long while, so the sweep
(``worker.tasks.sweep``) can send it again; the extract step is idempotent, so a page sent twice is published
once.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass

import redis

from worker.core.keys import key

# zlib level 1: ~4x smaller HTML for a fraction of a millisecond a page; higher levels cost 3-4x the CPU for a
# few per cent more.
LEVEL = 1


@dataclass(frozen=True, slots=True)
class StoredPage:
    body: bytes  # decompressed
    final_url: str
    charset: str | None
    fetched_at: str


def page_key(article_id: str) -> str:
    return key("page", article_id)


def handed_key() -> str:
    return key("pages", "handed")


def store(r: redis.Redis, article_id: str, page: StoredPage, ttl: float, message: str) -> int:
    """Keep the page for the extract stage, with the extract ``message`` (JSON) that announces it, in one
    round trip; returns the bytes the page takes in Redis."""
    packed = zlib.compress(page.body, LEVEL)
    k = page_key(article_id)
    pipe = r.pipeline(transaction=False)
    pipe.hset(k, mapping={"body": packed, "url": page.final_url, "charset": page.charset or "",
                          "fetched_at": page.fetched_at, "message": zlib.compress(message.encode(), LEVEL)})
    pipe.expire(k, max(1, int(ttl)))
    pipe.zadd(handed_key(), {article_id: time.time()})
    pipe.execute()
    return len(packed)


def load(r: redis.Redis, article_id: str) -> StoredPage | None:
    """The page, or None when it expired (or was never stored)."""
    raw = r.hgetall(page_key(article_id))
    return _unpack(raw) if raw else None


def _unpack(raw: dict[bytes, bytes]) -> StoredPage:
    return StoredPage(body=zlib.decompress(raw[b"body"]), final_url=raw[b"url"].decode(),
                      charset=raw[b"charset"].decode() or None, fetched_at=raw[b"fetched_at"].decode())


def describe(r: redis.Redis, article_id: str) -> StoredPage | None:
    """What the download stored, without the body (a redelivered download re-sends its message from it)."""
    url, charset, fetched_at = r.hmget(page_key(article_id), "url", "charset", "fetched_at")
    if url is None:
        return None
    return StoredPage(body=b"", final_url=url.decode(), charset=(charset or b"").decode() or None,
                      fetched_at=(fetched_at or b"").decode())


def drop(r: redis.Redis, article_id: str) -> None:
    """The extract stage is done with the page (``r`` may be a pipeline)."""
    r.delete(page_key(article_id))
    r.zrem(handed_key(), article_id)


def overdue(r: redis.Redis, older_than: float, limit: int = 100) -> list[str]:
    """The extract messages (JSON) of pages handed over more than ``older_than`` seconds ago and not done yet,
    oldest first; each is stamped as handed over now, so a sweep sends it again at most once per period.
    Entries whose page expired are dropped from the index."""
    now = time.time()
    ids = [aid.decode() for aid in r.zrangebyscore(handed_key(), "-inf", now - older_than, start=0, num=limit)]
    if not ids:
        return []
    pipe = r.pipeline(transaction=False)
    for aid in ids:
        pipe.hget(page_key(aid), "message")
    messages = pipe.execute()
    pipe = r.pipeline(transaction=False)
    out = []
    for aid, message in zip(ids, messages, strict=True):
        if message is None:
            pipe.zrem(handed_key(), aid)
        else:
            pipe.zadd(handed_key(), {aid: now}, xx=True)
            out.append(zlib.decompress(message).decode())
    pipe.execute()
    return out
