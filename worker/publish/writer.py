"""Publishing: routing rules pick the downstream streams, and one atomic Redis script writes the message.

The script checks the "published" memory and XADDs in one step, so a redelivered or duplicated task can never
publish the same article twice, even if a worker dies between the two.

On a Redis Cluster the streams and the article's "published" bucket are in different slots, so no one script
can touch them all. There each stream gets its own script, in the stream's slot: it XADDs only if the
article's marker for that stream is absent, and sets the marker in the same step (a redelivery finds the
marker and adds nothing); the article is marked published in its own slot only once every stream has it. A
worker dying in between leaves the article unmarked: its redelivery publishes again, and each stream's marker
turns that into nothing. The markers expire once no redelivery can come any more (``marker_ttl``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict

from worker.core.keys import key, stream_tag
from worker.core.redisconn import one_trip
from worker.core.settings import Settings, get_settings
from worker.dedup.buckets import BucketSet
from worker.publish.article import Article

# KEYS: the published-memory keys (KEYS[1] is the one written), then the streams.
# ARGV: field, ttl, number of memory keys, maxlen, article id, message JSON.
_PUBLISH = """
local nkeys = tonumber(ARGV[3])
for i = 1, nkeys do
  if redis.call('HEXISTS', KEYS[i], ARGV[1]) == 1 then return {} end
end
redis.call('HSET', KEYS[1], ARGV[1], 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
local ids = {}
for i = nkeys + 1, #KEYS do
  ids[#ids + 1] = redis.call('XADD', KEYS[i], 'MAXLEN', '~', ARGV[4], '*', 'id', ARGV[5], 'data', ARGV[6])
end
return ids
"""


# On a cluster, one stream: KEYS: the article's marker for this stream, the stream (same slot).
# ARGV: marker ttl, maxlen, article id, message JSON. Returns the entry id (the earlier one if already added).
_PUBLISH_ONE = """
local earlier = redis.call('GET', KEYS[1])
if earlier then return earlier end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'id', ARGV[3], 'data', ARGV[4])
redis.call('SET', KEYS[1], id, 'EX', tonumber(ARGV[1]))
return id
"""


class Route(BaseModel):
    """A routing rule: every condition given must match (any of its values); the article goes to ``stream``."""

    model_config = ConfigDict(extra="forbid")

    stream: str
    tags: list[str] | None = None
    sites: list[str] | None = None
    languages: list[str] | None = None
    feeds: list[str] | None = None  # feed names or URLs

    def matches(self, article: Article) -> bool:
        feed = article.feed
        return (
            (self.tags is None or bool(set(self.tags) & set(feed.tags)))
            and (self.sites is None or article.site in self.sites)
            and (self.languages is None or (article.language or "") in self.languages)
            and (self.feeds is None or feed.url in self.feeds or (feed.name or "") in self.feeds)
        )


def streams_for(article: Article, feed_route: str | None, routes: Sequence[Route], default: str) -> list[str]:
    """The feed's own ``route`` plus every matching rule's stream, in order, without repeats; else the default."""
    streams: list[str] = [feed_route] if feed_route else []
    for rule in routes:
        if rule.matches(article) and rule.stream not in streams:
            streams.append(rule.stream)
    return streams or [default]


class Publisher:
    def __init__(self, r: redis.Redis, settings: Settings | None = None) -> None:
        self.r = r
        self.settings = settings or get_settings()
        self.routes = [Route.model_validate(item) for item in self.settings.routes]
        self.published = BucketSet(r, "published", self.settings.seen_ttl_days * 86400)
        self._script = r.register_script(_PUBLISH)
        self.cluster = self.settings.redis_cluster
        self._one = r.register_script(_PUBLISH_ONE) if self.cluster else None
        # longer than any redelivery of the article can come: the broker's, the ledger's sweep's, a page
        # downloaded again after its hand-off expired
        s = self.settings
        self.marker_ttl = int(max(86400.0, s.page_ttl + s.task_time_limit + 4 * s.visibility_timeout))

    def publish(self, article: Article, streams: Sequence[str]) -> list[str]:
        """XADD the article to every stream unless it was published before. Returns the stream entry ids
        (empty when it had already been published)."""
        keys, field = self.published.location(article.id)
        payload = json.dumps(article.message(), ensure_ascii=False, separators=(",", ":"))
        if self.cluster:
            return self._publish_across_slots(article.id, keys, field, payload, streams)
        args: list[Any] = [field, int(self.published.ttl), len(keys), self.settings.stream_maxlen, article.id, payload]
        result = self._script(keys=[*keys, *streams], args=args)
        return [x.decode() if isinstance(x, bytes) else str(x) for x in result]

    def _publish_across_slots(self, article_id: str, keys: list[str], field: str, payload: str,
                              streams: Sequence[str]) -> list[str]:
        """The cluster's publish (see the module's doc): published already? then each stream's idempotent
        XADD in its slot, then the article marked published in its own."""
        assert self._one is not None
        check = self.r.pipeline(transaction=False)
        for k in keys:
            check.hexists(k, field)
        if any(check.execute()):
            return []
        trip = one_trip(self.r)
        for stream in streams:
            marker = key("out", article_id, tag=stream_tag(stream))
            self._one(keys=[marker, stream], args=[self.marker_ttl, self.settings.stream_maxlen, article_id, payload],
                      client=trip)
        ids = trip.execute() if streams else []
        mark = self.r.pipeline(transaction=True)  # every stream has it: only now is it published
        mark.hset(keys[0], field, 1)
        mark.expire(keys[0], int(self.published.ttl))
        mark.execute()
        return [x.decode() if isinstance(x, bytes) else str(x) for x in ids]
