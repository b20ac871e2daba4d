"""SiteMemory against a real Redis: idempotent observe, bounded and expiring memory, clean after a batch."""

from __future__ import annotations

import redis

from worker.clean import rules
from worker.clean.memory import SiteMemory, decode_table, table_slots
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


def line_table(r: redis.Redis, site: str) -> dict[bytes, int]:
    (lines_key,) = [k for k in site_keys(r, site) if b":line-table:" in k]
    return decode_table(r.get(lines_key))


def test_observe_is_idempotent_per_page(redis_client: redis.Redis) -> None:
    memory = SiteMemory(redis_client, Settings())
    text = f"{PROSE}\nFollow us on WeChat"
    for _ in range(3):  # task redelivery
        memory.observe("example.com", "page-1", text, "Ferry terminal delayed again")
    assert memory.pages_seen("example.com") == 1
    table = line_table(redis_client, "example.com")
    assert set(table.values()) == {1}
    assert rules.exact_hash("follow us on wechat") in table
    assert rules.title_hash("ferry terminal delayed again") in table
    # Nothing of the text itself is stored, only 6-byte fingerprints in a small table.
    (lines_key,) = [k for k in site_keys(redis_client, "example.com") if b":line-table:" in k]
    stored = redis_client.get(lines_key)
    assert all(len(f) == 6 for f in table) and b"wechat" not in stored.lower()
    assert len(stored) == 8 + 8 * 32  # a new table: header and 32 slots


def test_memory_is_bounded_per_site(redis_client: redis.Redis) -> None:
    settings = Settings(site_memory_max_lines=200, site_memory_max_pages=30)
    memory = SiteMemory(redis_client, settings)
    for i in range(100):
        text = "\n".join(f"line {i} {j} {PROSE}" for j in range(20))
        title = f"Headline number {i} of the day"
        memory.observe("big.example", f"page-{i}", text, title, [f"Other story {i} today"])
    keys = site_keys(redis_client, "big.example")
    lines = [k for k in keys if b":line-table:" in k]
    pages = [k for k in keys if b":page-table:" in k]
    assert len(keys) == 2 and len(lines) == 1 and len(pages) == 1
    # the line table stops growing at its largest size (256 slots for 200 lines); the page table learns 30 pages
    assert redis_client.strlen(lines[0]) == 8 + 8 * table_slots(200) == 8 + 8 * 256
    assert len(decode_table(redis_client.get(pages[0]))) == 30
    assert all(redis_client.ttl(k) > 0 for k in keys)
    assert memory.pages_seen("big.example") == 30


def test_a_full_table_keeps_the_repeated_lines_and_lets_the_long_tail_go(redis_client: redis.Redis) -> None:
    """At its largest size the line table replaces lines seen on one page with new ones; lines that repeat keep
    their counts, so boilerplate is still removed after many pages of unique article lines."""
    memory = SiteMemory(redis_client, Settings(site_memory_max_lines=100, site_memory_max_pages=1000))
    footer = "Follow us on WeChat"
    for i in range(60):  # 60 pages x 10 unique lines: six times what the table holds
        body = "\n".join(f"{PROSE} Page {i}, paragraph {j}." for j in range(10))
        memory.observe("tail.example", f"p{i}", f"{body}\n{footer}", None)
    table = line_table(redis_client, "tail.example")
    assert table[rules.exact_hash(footer.casefold())] == 60
    assert len(table) <= table_slots(100) and sorted(set(table.values())) == [1, 60]
    page = f"{PROSE} A new page.\n{footer}"
    assert memory.clean("tail.example", "new", page, None).removed == [(footer, rules.SITE_REPEAT)]


def test_the_former_layouts_keys_are_left_to_the_workers_of_that_release(redis_client: redis.Redis) -> None:
    """During a rolling upgrade an earlier release's workers keep their site memory (a set of pages, a hash of
    lines, under the names they had) while this one learns in its own tables: neither meets the other's type
    (WRONGTYPE would fail the old workers' tasks)."""
    memory = SiteMemory(redis_client, Settings())
    bucket = memory._buckets()[0]
    old_pages, old_lines = f"ingest:site:old.example:pages:{bucket}", f"ingest:site:old.example:lines:{bucket}"
    redis_client.sadd(old_pages, "0123456789abcdef")
    redis_client.hset(old_lines, b"12345678", 5)
    assert memory.pages_seen("old.example") == 0
    memory.observe("old.example", "p1", f"{PROSE}\nFollow us", None)
    assert memory.pages_seen("old.example") == 1
    assert line_table(redis_client, "old.example")[rules.exact_hash("follow us")] == 1
    assert redis_client.type(old_pages) == b"set" and redis_client.type(old_lines) == b"hash"
    assert redis_client.smembers(old_pages) == {b"0123456789abcdef"}


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
    # Redis expires each bucket's keys by itself once no worker reads them: at most 2 buckets and a few minutes
    assert all(0 < redis_client.ttl(k) <= 2 * 3600 + 360 for k in site_keys(redis_client, "port.example"))


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


def test_slots_are_counted_with_the_lines_and_teach_the_slot_rule(redis_client: redis.Redis) -> None:
    memory = SiteMemory(redis_client, Settings())
    for i in range(3):
        text = f"{PROSE} {i}\nA teaser that changes, number {i}"
        memory.observe("slots.example", f"p{i}", text, None, slots=["body", "teaser"])
        memory.observe("slots.example", f"p{i}", text, None, slots=["body", "teaser"])  # redelivery: once
    table = line_table(redis_client, "slots.example")
    assert table[rules.slot_hash("teaser")] == 3
    assert table[rules.slot_prose_hash("body")] == 3
    assert rules.slot_prose_hash("teaser") not in table
    page = f"{PROSE} new\nYet another teaser text"
    result = memory.clean("slots.example", "new", page, None, slots=["body", "teaser"])
    assert result.removed == [("Yet another teaser text", rules.SLOT)]
    # slots that do not match the text's lines (an older message, another text) are not used
    assert memory.clean("slots.example", "new", page, None, slots=["body"]).removed == []


def test_fleet_prior_is_learnt_from_sites_and_cleans_a_new_sites_first_page(redis_client: redis.Redis) -> None:
    memory = SiteMemory(redis_client, Settings())
    footer = "Copyright 2009 Associated Press. All rights reserved."
    shared: list[bytes] = []
    for site in ("a.example", "b.example", "c.example"):
        for i in range(2):  # a line that repeats on two pages of a site is boilerplate there
            text = f"{PROSE} {site} {i}\nFriday, September {10 + i}, 2009\n{footer}"
            shared += memory.observe(site, f"{site}-{i}", text, None) or []
    # each site names the footer and the masked date once, on its second page
    assert len(shared) == 3 * 3  # the footer's exact and masked forms, and the date's masked form
    first_page = f"Thursday, October 1, 2009\n{PROSE}\n{footer.replace('2009', '2010')}"
    memory.observe("new.example", "new-0", first_page, None)
    result = memory.clean("new.example", "new-0", first_page, None)
    assert result.text == PROSE and result.reasons == {rules.FLEET: 2}
    # a site that shows the footer on one page only shares nothing
    assert memory.observe("d.example", "d-0", f"{PROSE}\n{footer}", None) == []


def test_fleet_keys_are_apart_from_site_keys_and_bounded(redis_client: redis.Redis) -> None:
    settings = Settings(fleet_memory_max_lines=10)
    memory = SiteMemory(redis_client, settings)
    for s in range(4):
        for i in range(2):
            lines = [f"Boilerplate line {'abcd'[s]}{'efghijkl'[j]} of the fleet" for j in range(8)]  # 32 in all
            memory.observe(f"s{s}.example", f"p{s}-{i}", "\n".join([PROSE, *lines]), None)
    fleet_keys = list(redis_client.scan_iter(match=key("fleet", "*")))
    assert len(fleet_keys) == 1 and redis_client.hlen(fleet_keys[0]) == 10 and redis_client.ttl(fleet_keys[0]) > 0
    assert not [k for k in fleet_keys if b":site:" in k]
    # the observe script is given the site's own keys only (one Redis Cluster slot per site)
    pipe = redis_client.pipeline(transaction=False)
    memory.observe("s0.example", "p-x", PROSE, "A title of several words", pipe=pipe)
    ((args, _),) = pipe.command_stack
    n_keys = int(args[2])
    assert all(site_part("s0.example") in str(k) for k in args[3 : 3 + n_keys])


def test_observe_in_a_pipeline_then_share(redis_client: redis.Redis) -> None:
    # What the fetch task does: observe goes with its other writes, the reply is handed to share().
    memory = SiteMemory(redis_client, Settings())
    replies = []
    for i in range(2):
        pipe = redis_client.pipeline(transaction=False)
        assert memory.observe("pipe.example", f"p{i}", f"{PROSE} {i}\nShare this article", None, pipe=pipe) is None
        pipe.incr("unrelated")
        replies.append(pipe.execute()[0])
    assert memory.share(replies[0]) == []
    assert memory.share(replies[1]) == [rules.exact_hash("share this article")]
    (fleet_key,) = redis_client.scan_iter(match=key("fleet", "*"))
    assert redis_client.hgetall(fleet_key) == {rules.exact_hash("share this article"): b"1"}
