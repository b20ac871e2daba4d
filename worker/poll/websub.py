"""WebSub (push) subscriptions: per-feed state in Redis, per-feed secrets and delivery signatures, asking a hub
to push, answering its verification of intent, and turning a delivered feed into fetch tasks.

State lives in one hash per feed, ``key("websub", feed_id)``: ``topic``, ``hub``, ``state`` (pending,
verified, denied), ``lease_until`` (epoch seconds), ``lease_seconds`` (as granted), ``requested_at``, and
``pending`` (the mode of the request the hub has yet to verify, or empty). Secrets are never stored: each
feed's is an HMAC of its id under the master secret (``websub_secret``), so the callback can recompute it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import redis
import structlog

from worker import metrics
from worker.core.keys import key
from worker.core.messages import PageJob
from worker.core.settings import Settings
from worker.feeds.feedlist import Feed
from worker.net.fetch import FetchError, post_form
from worker.poll.parse import parse_feed
from worker.poll.step import new_entries

if TYPE_CHECKING:
    from worker.context import Context

log = structlog.get_logger("worker.poll.websub")

RETRY_SECONDS = 3600.0  # at most one subscription request per feed per hour, whatever happened to the last
DENIED_RETRY_SECONDS = 86400.0  # a hub that denied us is asked again only a day later
PENDING_MAX_AGE = 86400.0  # a hub verifying a request older than this is answered as if none were pending
RENEW_FRACTION = 0.1  # renew when this share of the granted lease is left...
RENEW_MIN_SECONDS = 3600.0  # ...or an hour, whichever is longer
DEFAULT_GRANTED_LEASE = 86400.0  # a hub that names no lease is assumed to grant a day

SIGNATURE_ALGORITHMS: dict[str, Callable[..., Any]] = {
    "sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512,
}

State = Literal["pending", "verified", "denied"]
SignatureCheck = Literal["ok", "missing", "bad"]


def state_key(feed_id: str) -> str:
    return key("websub", feed_id)


def enabled(settings: Settings) -> bool:
    """Push needs both a public callback URL and the master secret; without either, feeds are only polled."""
    return bool(settings.websub_callback_url and settings.websub_secret)


def feed_secret(settings: Settings, feed_id: str) -> str:
    """The feed's ``hub.secret``: 64 hex characters (the spec allows < 200 bytes), derived, never stored."""
    assert settings.websub_secret is not None, "feed_secret needs websub_secret"
    master = settings.websub_secret.get_secret_value().encode()
    return hmac.new(master, f"websub-feed:{feed_id}".encode(), hashlib.sha256).hexdigest()


def callback_url(settings: Settings, feed_id: str) -> str:
    assert settings.websub_callback_url is not None
    return f"{settings.websub_callback_url.rstrip('/')}/websub/{feed_id}"


def sign(secret: str, body: bytes, algorithm: str = "sha256") -> str:
    """An ``X-Hub-Signature`` value, as a hub computes it (used by tests and tools)."""
    return f"{algorithm}={hmac.new(secret.encode(), body, SIGNATURE_ALGORITHMS[algorithm]).hexdigest()}"


def verify_signature(secret: str, body: bytes, header: str | None) -> SignatureCheck:
    """Check ``X-Hub-Signature: method=hexdigest`` over the raw body, in constant time. An unknown method
    is a bad signature: accepting it would let anyone pick a method we do not check."""
    if not header or not header.strip():
        return "missing"
    method, _, given = header.strip().partition("=")
    digest = SIGNATURE_ALGORITHMS.get(method.strip().lower())
    if digest is None or not given:
        return "bad"
    expected = hmac.new(secret.encode(), body, digest).hexdigest()
    return "ok" if hmac.compare_digest(expected, given.strip().lower()) else "bad"


# --- state ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subscription:
    topic: str
    hub: str
    state: State
    lease_until: float
    lease_seconds: float
    requested_at: float
    pending: str  # "subscribe", "unsubscribe" or ""

    def active(self, now: float) -> bool:
        return self.state == "verified" and self.lease_until > now


def load(r: redis.Redis, feed_id: str) -> Subscription | None:
    raw = {k.decode(): v.decode() for k, v in r.hgetall(state_key(feed_id)).items()}
    if not raw.get("topic"):
        return None
    state = raw.get("state", "pending")
    return Subscription(
        topic=raw["topic"], hub=raw.get("hub", ""),
        state=state if state in ("pending", "verified", "denied") else "pending",  # type: ignore[arg-type]
        lease_until=_float(raw.get("lease_until")), lease_seconds=_float(raw.get("lease_seconds")),
        requested_at=_float(raw.get("requested_at")), pending=raw.get("pending", ""),
    )


def _float(value: str | None) -> float:
    try:
        return float(value or 0.0)
    except ValueError:
        return 0.0


def push_active(r: redis.Redis, feed_id: str, now: float | None = None) -> bool:
    """True while a hub has verified our subscription to this feed and its lease has not run out: the
    scheduler then polls the feed only at its ceiling interval, as a safety net."""
    raw = r.hmget(state_key(feed_id), ["state", "lease_until"])
    if raw[0] != b"verified":
        return False
    now = time.time() if now is None else now
    return _float(raw[1].decode() if raw[1] is not None else None) > now


def needs_request(sub: Subscription | None, hub: str, topic: str, now: float) -> bool:
    """Whether to (re)subscribe: never asked, hub or topic changed, or the lease is in its last 10 % (at
    least its last hour); but never twice within RETRY_SECONDS (a day after a denial), so a hub that fails,
    never verifies or refuses us is not hammered on every poll."""
    if sub is None:
        return True
    if now - sub.requested_at < (DENIED_RETRY_SECONDS if sub.state == "denied" else RETRY_SECONDS):
        return False
    if sub.hub != hub or sub.topic != topic or sub.state != "verified":
        return True
    margin = max(RENEW_FRACTION * sub.lease_seconds, RENEW_MIN_SECONDS)
    return sub.lease_until - now <= margin


# --- asking the hub ---------------------------------------------------------------------------------------


def maybe_subscribe(ctx: Context, feed: Feed, hub: str | None, self_url: str | None,
                    now: float | None = None, *, not_modified: bool = False) -> bool:
    """After a successful poll: subscribe (or renew) when the feed advertises a hub and push is configured.
    The topic is the feed's rel=self URL when it names one, as the spec requires. A 304 carries no feed, so
    it renews what the last full poll advertised; a full feed that stopped naming a hub lets the lease
    lapse. Returns True when a request was sent and the hub accepted it."""
    if not enabled(ctx.settings):
        return False
    current = load(ctx.r, feed.id)
    if hub is None and not_modified and current is not None and current.state != "denied":
        hub, self_url = current.hub, current.topic
    if hub is None:
        return False
    now = time.time() if now is None else now
    topic = self_url or feed.url
    if not needs_request(current, hub, topic, now):
        return False
    return request(ctx, feed.id, hub, topic, "subscribe", now=now)


def request(ctx: Context, feed_id: str, hub: str, topic: str,
            mode: Literal["subscribe", "unsubscribe"], now: float | None = None) -> bool:
    """Send one (un)subscription request. The pending request is written first: a hub may verify it
    before its answer to this POST has even arrived."""
    settings = ctx.settings
    now = time.time() if now is None else now
    current = load(ctx.r, feed_id)
    fields: dict[str, Any] = {"topic": topic, "hub": hub, "pending": mode, "requested_at": now}
    if current is None or current.topic != topic or current.state != "verified":
        fields["state"] = "pending"  # a renewal keeps the live subscription live while it is verified
    ctx.r.hset(state_key(feed_id), mapping=fields)
    form = {"hub.mode": mode, "hub.topic": topic, "hub.callback": callback_url(settings, feed_id)}
    if mode == "subscribe":
        form |= {"hub.secret": feed_secret(settings, feed_id),
                 "hub.lease_seconds": str(settings.websub_lease_seconds)}
    try:
        status = post_form(hub, form, settings=settings, client=ctx.http(hub))
    except FetchError as exc:
        metrics.WEBSUB_SUBSCRIPTIONS.labels(outcome="hub_error").inc()
        log.error("websub_request_failed", feed_id=feed_id, hub=hub, mode=mode, reason=exc.reason, error=str(exc))
        return False
    if not 200 <= status < 300:
        metrics.WEBSUB_SUBSCRIPTIONS.labels(outcome="hub_refused").inc()
        log.error("websub_request_refused", feed_id=feed_id, hub=hub, mode=mode, status=status)
        return False
    metrics.WEBSUB_SUBSCRIPTIONS.labels(outcome="requested").inc()
    log.info("websub_requested", feed_id=feed_id, hub=hub, topic=topic, mode=mode)
    return True


# --- the hub's verification of intent -----------------------------------------------------------------------


def verify_intent(r: redis.Redis, feed_id: str, params: Mapping[str, str],
                  now: float | None = None) -> tuple[int, str]:
    """Answer a hub's GET on the callback: (HTTP status, body). A subscribe/unsubscribe is confirmed, by
    echoing ``hub.challenge``, only for the topic we asked about and while our request is pending; anything
    else is 404, which tells the hub we did not ask."""
    now = time.time() if now is None else now
    mode = params.get("hub.mode", "")
    topic = params.get("hub.topic", "")
    sub = load(r, feed_id)
    if sub is None or not hmac.compare_digest(topic.encode(), sub.topic.encode()):
        return _refuse(feed_id, mode, "unknown topic")
    if mode == "denied":
        r.hset(state_key(feed_id), mapping={"state": "denied", "pending": "", "lease_until": 0})
        metrics.WEBSUB_SUBSCRIPTIONS.labels(outcome="denied").inc()
        log.error("websub_denied", feed_id=feed_id, topic=topic, reason=params.get("hub.reason", "")[:300])
        return 200, ""
    if mode not in ("subscribe", "unsubscribe"):
        return _refuse(feed_id, mode, "unknown mode")
    if sub.pending != mode or now - sub.requested_at > PENDING_MAX_AGE:
        return _refuse(feed_id, mode, "no pending request")
    challenge = params.get("hub.challenge", "")
    if not challenge:
        return _refuse(feed_id, mode, "no challenge")
    if mode == "unsubscribe":
        r.delete(state_key(feed_id))
        metrics.WEBSUB_SUBSCRIPTIONS.labels(outcome="unsubscribed").inc()
        log.info("websub_unsubscribed", feed_id=feed_id, topic=topic)
        return 200, challenge
    lease = _float(params.get("hub.lease_seconds")) or DEFAULT_GRANTED_LEASE
    r.hset(state_key(feed_id), mapping={"state": "verified", "pending": "", "lease_seconds": lease,
                                         "lease_until": now + lease})
    metrics.WEBSUB_SUBSCRIPTIONS.labels(outcome="verified").inc()
    log.info("websub_verified", feed_id=feed_id, topic=topic, lease_seconds=lease)
    return 200, challenge


def _refuse(feed_id: str, mode: str, why: str) -> tuple[int, str]:
    metrics.WEBSUB_SUBSCRIPTIONS.labels(outcome="verification_refused").inc()
    log.warning("websub_verification_refused", feed_id=feed_id, mode=mode[:30], why=why)
    return 404, ""


# --- deliveries -------------------------------------------------------------------------------------------


def entries_from_delivery(ctx: Context, feed: Feed, body: bytes,
                          content_type: str | None) -> tuple[list[PageJob], list[str]]:
    """A pushed feed document to page jobs and the ids to mark seen afterwards, exactly as a poll's; raises
    FeedError for a body that is no feed."""
    parsed = parse_feed(body, url=feed.url, content_type=content_type)
    return new_entries(ctx, feed, parsed)
