"""The fleet-wide prior: lines and digit-masked templates that have become boilerplate on many sites.

It is learnt from the site memories themselves, not written by hand. When a short line's count in a site's
current bucket reaches ``SHARE_AT`` pages, the site's observe script names it in its reply (once per site and
bucket), and :meth:`FleetPrior.share` counts one more site for it here. A line that many sites repeat
("Comments", "Share this article", "Copyright 2009 Associated Press. All rights reserved.", and every
date-only line through its masked form "~, ~ 0, 0") then cleans the first pages of a site nothing has been
learnt about yet.

Its keys are apart from every site's (``<prefix>:fleet:lines:<bucket>``), and no script touches a site's keys
and the fleet's together: in a Redis Cluster each script's keys share one slot. Memory is bounded the way the
site memory is: time buckets of ``site_memory_bucket_hours``, the last ``site_memory_buckets`` read and kept,
at most ``fleet_memory_max_lines`` hashes a bucket. A bucket counts distinct sites (a site names a line once a
bucket), so a line's evidence is its largest count over the live buckets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis

from worker.core.keys import key
from worker.core.redisconn import lua
from worker.core.settings import Settings, get_settings

SHARE_AT = 2  # pages of one site on which a short line must have appeared before the site shares it


class FleetPrior:
    """Fleet-wide line statistics in Redis: ``share`` what sites learnt, ``queue_lookup`` in a clean's pipeline."""

    def __init__(
        self,
        redis: redis.Redis,
        settings: Settings | None = None,
        *,
        namespace: str = "fleet",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.r = redis
        self.settings = settings or get_settings()
        self.namespace = namespace  # evaluations keep their own prior apart from a live one
        self.clock = clock
        self._share = self.r.register_script(lua("worker.clean", "fleet_share"))

    @property
    def _bucket_seconds(self) -> float:
        return max(1.0, self.settings.site_memory_bucket_hours * 3600.0)

    def buckets(self) -> list[int]:
        """Live bucket numbers, current first (the site memory's numbering, so a site names a line once each)."""
        current = int(self.clock() // self._bucket_seconds)
        return [current - i for i in range(max(1, self.settings.site_memory_buckets))]

    def bucket_key(self, bucket: int) -> str:
        return key(self.namespace, "lines", str(bucket))

    def share(self, hashes: Iterable[bytes], *, pipe: redis.client.Pipeline | None = None) -> None:
        """One more site has each of these line hashes as boilerplate (what a site's observe reply names)."""
        fields = sorted(set(hashes))
        if not fields:
            return
        ttl = math.ceil(self._bucket_seconds * (len(self.buckets()) + 1))
        self._share(keys=[self.bucket_key(self.buckets()[0])],
                    args=[self.settings.fleet_memory_max_lines, ttl, *fields], client=pipe or self.r)

    def queue_lookup(self, pipe: redis.client.Pipeline, fields: Sequence[bytes]) -> int:
        """Queue the reads of ``fields`` in every live bucket; returns how many replies :meth:`counts` takes."""
        if not fields:
            return 0
        buckets = self.buckets()
        for b in buckets:
            pipe.hmget(self.bucket_key(b), list(fields))
        return len(buckets)

    @staticmethod
    def counts(fields: Sequence[bytes], replies: Sequence[Any]) -> dict[bytes, int]:
        """Sites per field from :meth:`queue_lookup`'s replies: the largest count of any live bucket."""
        out: dict[bytes, int] = {}
        for values in replies:
            for f, v in zip(fields, values, strict=True):
                if v is not None and int(v) > out.get(f, 0):
                    out[f] = int(v)
        return out
