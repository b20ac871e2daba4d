"""The dead-letter stream: one record per feed or article that could not be processed, with the reason and what
is needed to replay it (``ingest dead-letters list|replay``)."""

from __future__ import annotations

import json
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import redis

from worker.core.redisconn import lua
from worker.core.settings import Settings, get_settings

DEAD_LETTER_MAXLEN = 100_000
ONCE_SECONDS = 7 * 86400  # a task's redelivery or resend comes within this, by far
# The Celery task running in this thread or process, set by worker.app at every task's start (None outside one):
# the steps never see Celery, yet a task's letter is recorded once however often the task is delivered.
CURRENT_TASK: ContextVar[str | None] = ContextVar("ingest_current_task", default=None)


@dataclass(frozen=True)
class DeadLetter:
    entry_id: str
    stage: str  # "poll" or "fetch"/"publish"
    reason: str
    url: str
    error: str
    at: float
    payload: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"entry_id": self.entry_id, "stage": self.stage, "reason": self.reason, "url": self.url,
                "error": self.error, "at": self.at, "payload": self.payload}


class DeadLetters:
    def __init__(self, r: redis.Redis, settings: Settings | None = None) -> None:
        self.r = r
        self.stream = (settings or get_settings()).dead_letter_stream
        self._once = r.register_script(lua("worker.publish", "deadletter"))

    def record(self, *, stage: str, reason: str, url: str, error: str, payload: dict[str, Any],
               task_id: str | None = None) -> str:
        """Add the letter; returns its entry id. With ``task_id``, at most one letter per task: a task redelivered
        after it had recorded its letter (killed before the ack), or sent again by the sweep while its first copy
        was only slow, returns '' instead of a second letter for the same page."""
        fields = {
            "stage": stage,
            "reason": reason,
            "url": url,
            "error": error[:2000],
            "at": f"{time.time():.3f}",
            "payload": json.dumps(payload, ensure_ascii=False, default=str),
        }
        if task_id:
            entry = self._once(keys=[self.stream, f"{{{self.stream}}}:once:{task_id}"],
                               args=[ONCE_SECONDS, DEAD_LETTER_MAXLEN, *(x for kv in fields.items() for x in kv)])
        else:
            entry = self.r.xadd(self.stream, fields, maxlen=DEAD_LETTER_MAXLEN, approximate=True)
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    def list(self, count: int = 100, reason: str | None = None) -> list[DeadLetter]:
        out = []
        for entry_id, fields in self.r.xrevrange(self.stream, count=count):
            letter = _decode(entry_id, fields)
            if reason is None or letter.reason == reason:
                out.append(letter)
        return out

    def get(self, entry_id: str) -> DeadLetter | None:
        found = self.r.xrange(self.stream, min=entry_id, max=entry_id)
        return _decode(*found[0]) if found else None

    def delete(self, entry_id: str) -> None:
        self.r.xdel(self.stream, entry_id)


def _decode(entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
    f = {k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()}
    return DeadLetter(
        entry_id=entry_id.decode(),
        stage=f.get("stage", ""),
        reason=f.get("reason", ""),
        url=f.get("url", ""),
        error=f.get("error", ""),
        at=float(f.get("at", 0) or 0),
        payload=json.loads(f.get("payload") or "{}"),
    )
