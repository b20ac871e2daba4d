"""SiteMemory against a real Redis: idempotent observe, bounded and expiring memory, clean after a batch."""

from __future__ import annotations

import redis

from worker.clean.memory import SiteMemory
from worker.core.keys import key, site_part
from worker.core.settings import Settings

PROSE = (
    "The harbour authority said on Monday that the new ferry terminal would open in the autumn, two years "
    "later than planned, after the discovery of unstable ground beneath the old quay."
)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def site_keys(r: redis.Redis, site: str) -> list[bytes]:
    return sorted(r.scan_iter(match=key("site", site_part(site), "*")))


def test_observe_is_idempotent_per_page(redis_client: redis.Redis) -> None:
    memory = SiteMemory(redis_client, Settings())
    text = f"{PROSE}\nFollow us on WeChat"
    for _ in range(3):  # task redelivery
        memory.observe("example.com", "page-1", text, "Ferry terminal delayed again")
    assert memory.pages_seen("example.com") == 1
    (lines_key,) = [k for k in site_keys(redis_client, "example.com") if b":lines:" in k]
    assert set(redis_client.hvals(lines_key)) == {b"1"}
    # Nothing of the text itself is stored, only 8-byte hashes.
    assert all(len(f) == 8 for f in redis_client.hkeys(lines_key))
    assert b"wechat" not in b"".join(redis_client.hkeys(lines_key)).lower()


def test_memory_is_bounded_per_site(redis_client: redis.Redis) -> None:
    settings = Settings(site_memory_max_lines=200, site_memory_max_pages=30, site_titles_max=25)
    memory = SiteMemory(redis_client, settings)
    for i in range(100):
        text = "\n".join(f"line {i} {j} {PROSE}" for j in range(20))
        title = f"Headline number {i} of the day"
        memory.observe("big.example", f"page-{i}", text, title, [f"Other story {i} today"])
    keys = site_keys(redis_client, "big.example")
    lines = [k for k in keys if b":lines:" in k]
    pages = [k for k in keys if b":pages:" in k]
    assert len(lines) == 1 and redis_client.hlen(lines[0]) <= 200
    assert len(pages) == 1 and redis_client.scard(pages[0]) == 30
    assert redis_client.zcard(key("site", "big.example", "titles")) == 25
    assert all(redis_client.ttl(k) > 0 for k in keys)
    assert memory.pages_seen("big.example") == 30


def test_memory_decays_with_time(redis_client: redis.Redis) -> None:
    clock = Clock()
    settings = Settings(site_memory_bucket_hours=1.0, site_memory_buckets=2, site_titles_ttl_hours=2.0)
    memory = SiteMemory(redis_client, settings, clock=clock)
    sidebar = "Related: Harbour fees to rise"
    for i in range(4):
        memory.observe("port.example", f"p{i}", f"{PROSE} {i}\n{sidebar}", f"Harbour story {i} of the week")
    page = f"{PROSE} new\n{sidebar}\nHarbour story 2 of the week"
    assert memory.clean("port.example", "new", page, None).reasons == {"site_repeat": 1, "headline": 1}

    clock.now += 3600  # one bucket later: still remembered
    assert memory.pages_seen("port.example") == 4
    assert memory.clean("port.example", "new", page, None).reasons == {"site_repeat": 1, "headline": 1}

    clock.now += 2 * 3600  # past the live buckets and the headline TTL: forgotten
    assert memory.pages_seen("port.example") == 0
    assert memory.needs_hold("port.example")
    assert memory.clean("port.example", "new", page, None).removed == []
    # Redis expires the keys by itself too.
    assert all(0 < redis_client.ttl(k) <= 3 * 3600 for k in site_keys(redis_client, "port.example"))


def test_clean_after_batch_observe(redis_client: redis.Redis) -> None:
    memory = SiteMemory(redis_client, Settings(clean_min_pages=5))
    sidebar = ["Dernière mise à jour à 08h35", "Follow us on WeChat", "| | |"]
    batch = {}
    for i in range(5):
        stamp = f"Dernière mise à jour à {10 + i}h{20 + i}"
        batch[f"p{i}"] = "\n".join([f"{PROSE} Story {i}.", f"{PROSE.upper()} Again, story {i}.",
                                    stamp, *sidebar[1:]])
    assert memory.needs_hold("news.example")
    titles = [f"Ferry story number {i} delayed" for i in range(5)]
    for (page_id, text), title in zip(batch.items(), titles, strict=True):
        memory.observe("news.example", page_id, text, title, [t for t in titles if t != title])
    assert not memory.needs_hold("news.example")
    for page_id, text in batch.items():
        result = memory.clean("news.example", page_id, text, None)
        assert result.reasons == {"template": 1, "site_repeat": 2}
        assert result.text.splitlines() == text.splitlines()[:2]
    # An unseen page of the site is cleaned too, its own line counts are not there to subtract.
    fresh = f"{PROSE}\nFollow us on WeChat\nFerry story number 3 delayed"
    result = memory.clean("news.example", "unseen", fresh, "Something else entirely happened")
    assert result.reasons == {"site_repeat": 1, "headline": 1}
    assert result.text == PROSE


def test_unknown_site_is_left_alone(redis_client: redis.Redis) -> None:
    memory = SiteMemory(redis_client, Settings())
    result = memory.clean("nowhere.example", "x", f"{PROSE}\nFollow us", "T")
    assert result.removed == [] and result.text == f"{PROSE}\nFollow us"
    assert memory.clean("nowhere.example", "x", "", None).text == ""
