"""Reading published articles: plain following for humans, and a consumer-group member for downstream
services (acknowledges what it handled, reclaims what a crashed member left pending with XAUTOCLAIM)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

Handler = Callable[[str, dict[str, Any]], bool]  # returns False to stop
BLOCK_MS = 2000


def _decode(fields: dict[bytes, bytes]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fields[b"data"])
    return data


def read_plain(r: redis.Redis, stream: str, handle: Handler, *, from_start: bool, follow: bool) -> None:
    last = "0-0" if from_start else "$"
    if not from_start and not follow:
        return
    if last == "$":  # resolve "$" once so nothing published while we print is skipped
        info = r.xinfo_stream(stream) if r.exists(stream) else None
        last = info["last-generated-id"].decode() if info else "0-0"
    while True:
        batch = r.xread({stream: last}, count=500, block=BLOCK_MS if follow else None)
        if not batch:
            if follow:
                continue
            return
        for entry_id, fields in batch[0][1]:
            last = entry_id.decode()
            if not handle(last, _decode(fields)):
                return


class Consumer:
    """One member of a consumer group. Messages are acknowledged only after ``handle`` returns, so a member
    that dies mid-batch leaves them pending; any member reclaims pending messages idle longer than
    ``claim_idle`` seconds before reading new ones."""

    def __init__(self, r: redis.Redis, stream: str, group: str, name: str, *, claim_idle: float = 60.0) -> None:
        self.r, self.stream, self.group, self.name = r, stream, group, name
        self.claim_idle_ms = int(claim_idle * 1000)
        try:
            r.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def reclaim(self, count: int = 100) -> list[tuple[bytes, dict[bytes, bytes]]]:
        result = self.r.xautoclaim(self.stream, self.group, self.name, self.claim_idle_ms, "0-0", count=count)
        return [(eid, f) for eid, f in result[1] if f]

    def own_pending(self, count: int = 100) -> list[tuple[bytes, dict[bytes, bytes]]]:
        batch = self.r.xreadgroup(self.group, self.name, {self.stream: "0"}, count=count)
        return batch[0][1] if batch else []

    def run(self, handle: Handler, *, follow: bool = True, count: int = 100) -> None:
        while True:
            entries = list({eid: f for eid, f in self.own_pending(count) + self.reclaim(count)}.items())
            if not entries:
                batch = self.r.xreadgroup(self.group, self.name, {self.stream: ">"}, count=count,
                                          block=BLOCK_MS if follow else None)
                entries = batch[0][1] if batch else []
            if not entries:
                if follow:
                    continue
                return
            for entry_id, fields in entries:
                go_on = handle(entry_id.decode(), _decode(fields))
                self.r.xack(self.stream, self.group, entry_id)
                if not go_on:
                    return
