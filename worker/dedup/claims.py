"""Per-article claims: two workers never process the same article at the same time.
"""

from __future__ import annotations

import enum

import redis

from worker.core.keys import digest, key, slot_group
from worker.core.redisconn import is_pipeline
from worker.dedup.buckets import BucketSet
from worker.dedup.fingerprint import HEX16, id64

# --- claims ------------------------------------------------------------------------------------------------

_CLAIM = """
for i = 2, #KEYS do
  if redis.call('HEXISTS', KEYS[i], ARGV[3]) == 1 then return 2 end
end
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _id_part(article_id: str) -> str:
    # Article ids are our own 16-hex hashes; anything else is hashed so it can never shape a key.
    return article_id if HEX16.fullmatch(article_id) else digest(article_id)


def _claim_key(article_id: str) -> str:
    # on a cluster, in the slot of the article's "published" bucket, which the claim script reads
    return key("claim", _id_part(article_id), tag=slot_group(id64(article_id)))


class Claim(enum.IntEnum):
    """What :func:`claim` found; false only when another task holds the article."""

    HELD = 0  # another task holds it
    TAKEN = 1  # ours now, or again (a redelivered Celery task keeps its task id and re-enters its own claim)
    PUBLISHED = 2  # already published: nothing left to do, and nothing was claimed


def claim(r: redis.Redis, article_id: str, ttl_seconds: int, owner: str, *,
          published: BucketSet | None = None) -> Claim:
    """Take the article for ``ttl_seconds`` unless another task holds it or, given the ``published`` memory,
    it has gone out already (checked in the same call: one round trip for both). On a pipeline (``OneTrip``)
    the call is queued: ``Claim(reply)`` reads its reply."""
    keys, field = published.location(article_id) if published is not None else ([], "")
    # EVALSHA (the script is sent once per connection, not with every call)
    reply = r.register_script(_CLAIM)(keys=[_claim_key(article_id), *keys],
                                      args=[owner, max(1, int(ttl_seconds)), field])
    return reply if is_pipeline(reply) else Claim(reply)


def release(r: redis.Redis, article_id: str, owner: str) -> None:
    """Give the article back, only if ``owner`` still holds it (never someone else's claim taken after ours
    expired). On a pipeline the release is queued with the pipeline's other commands."""
    r.register_script(_RELEASE)(keys=[_claim_key(article_id)], args=[owner])


