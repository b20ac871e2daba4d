"""The state store on a real Redis Cluster (three local nodes): the keys a script or a MULTI touches together
share a slot, the one-round-trip pipeline works across nodes and survives a node that lost its scripts, the
compact sets and the cross-slot publish stay exactly-once; on one node every key keeps its old name and the
pipeline its one round trip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import key_slot

from tests.cluster import LocalCluster
from tests.conftest import ON_CLUSTER, broker_url
from tests.e2e.test_faults import private_redis
from worker.core.redisconn import Cluster, OneTrip, one_trip
from worker.core.settings import Settings, get_settings
from worker.demo.server import LocalServer
from worker.demo.site import build_site
from worker.feeds.feedlist import Feed, save_feeds

__all__ = ["private_redis"]  # the fixture, imported for this module's tests

pytestmark = pytest.mark.cluster
BUMP = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
AID = "0123456789abcdef"


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    """The suite's cluster when it runs on one, else a cluster of this module's own."""
    if ON_CLUSTER:
        yield get_settings().redis_url.get_secret_value()  # type: ignore[union-attr]
        return
    with LocalCluster() as cluster:
        yield cluster.url


@pytest.fixture
def on_cluster(cluster_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """Settings of a deployment with its state on the cluster, and a cluster client, emptied around the test."""
    monkeypatch.setenv("REDIS_URL", cluster_url)
    monkeypatch.setenv("INGEST_REDIS_CLUSTER", "true")
    monkeypatch.setenv("INGEST_BROKER_URL", "redis://127.0.0.1:6379/0")  # required, never used here
    get_settings.cache_clear()
    client = Cluster.from_url(cluster_url)
    client.flushall()  # every primary: the cluster holds only this module's keys
    yield client
    client.flushall()
    client.close()
    get_settings.cache_clear()


@pytest.fixture
def one_node(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("INGEST_REDIS_CLUSTER", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def slots(keys: list[str]) -> set[int]:
    return {key_slot(k.encode()) for k in keys}


def test_the_fixture_forms_a_three_node_cluster(on_cluster: Cluster) -> None:
    assert len(on_cluster.get_primaries()) == 3
    for i in range(300):
        on_cluster.set(f"spread:{i}", i)
    assert all(node.redis_connection.dbsize() > 0 for node in on_cluster.get_primaries())


def _keys_of_each_script() -> dict[str, list[str]]:
    """The keys each script (or MULTI) is given together, as the code builds them."""
    from worker.clean.memory import SiteMemory
    from worker.core import runs
    from worker.dedup.buckets import BucketSet
    from worker.dedup.claims import _claim_key
    from worker.net.politeness import _keys
    from worker.poll.schedule import INVALID_TAG, invalid_key

    r = redis.Redis()  # never connected: only key names are asked for
    published = BucketSet(r, "published", 86400)
    published._layout._bits = {g: 14 for g in range(published._layout.generation() - 2,
                                                    published._layout.generation() + 1)}
    claim_keys, _ = published.location(AID)
    from worker.core.keys import key

    return {
        "host": _keys("example.com"),
        "site memory": [SiteMemory._pages_key("example.com", b) for b in (1, 2, 3)]
        + [SiteMemory._lines_key("example.com", b) for b in (1, 2, 3)],
        "run": [runs.run_key("r1"), runs._todo("r1"), runs._outcomes("r1"), runs._meta("r1"), runs._deferrals("r1")],
        "claim": [_claim_key(AID), *claim_keys],
        "feed list problems": [invalid_key(), key("feeds", "invalid", "digest", tag=INVALID_TAG)],
    }


def test_keys_touched_together_share_a_slot(on_cluster: Cluster) -> None:
    for what, keys in _keys_of_each_script().items():
        assert len(slots(keys)) == 1, f"{what}: {keys}"
    assert _keys_of_each_script()["host"][0] == "ingest:host:{example.com}:slots"


def test_on_one_node_no_key_changes_its_name(one_node: None) -> None:
    keys = _keys_of_each_script()
    assert keys["host"][0] == "ingest:host:example.com:slots"
    assert keys["run"][:2] == ["ingest:run:r1", "ingest:run:r1:todo"]
    assert keys["claim"][0] == f"ingest:claim:{AID}"
    assert keys["site memory"][-1] == "ingest:site:example.com:line-table:3"
    assert not any("{" in k for ks in keys.values() for k in ks)


def test_one_trip_across_nodes_and_a_node_that_lost_its_scripts(on_cluster: Cluster) -> None:
    bump = on_cluster.register_script(BUMP)
    names = [f"n{i}" for i in range(12)]  # spread over the three nodes
    assert len({on_cluster.get_node_from_key(n).name for n in names}) == 3
    trip = one_trip(on_cluster)
    for n in names:
        bump(keys=[n], args=[1], client=trip)
    assert trip.execute() == [1] * 12
    on_cluster.script_flush()  # on every primary
    trip = one_trip(on_cluster)
    for n in names:
        bump(keys=[n], args=[10], client=trip)
        trip.incr(f"{n}:other")
    assert trip.execute() == [11, 1] * 12  # each ran exactly once, in place
    assert [int(on_cluster.get(n) or 0) for n in names] == [11] * 12


def test_one_trip_on_one_node_is_still_one_round_trip(private_redis: tuple[redis.Redis, str], one_node: None) -> None:
    r, _ = private_redis
    bump = r.register_script(BUMP)
    bump(keys=["n"], args=[1])
    r.config_resetstat()
    trip = one_trip(r)
    assert isinstance(trip, OneTrip)
    bump(keys=["n"], args=[1], client=trip)
    trip.incr("m")
    assert trip.execute() == [2, 1]
    # the script, the command inside it and the other one: no SCRIPT EXISTS, no MULTI, nothing else
    calls = {name: stat["calls"] for name, stat in r.info("commandstats").items()}
    assert calls == {"cmdstat_config|resetstat": 1, "cmdstat_evalsha": 1, "cmdstat_incrby": 2}  # incr is INCRBY


def test_compact_sets_on_a_cluster_stay_exact(on_cluster: Cluster) -> None:
    from worker.dedup.buckets import BucketSet

    seen = BucketSet(on_cluster, "seen", 3600)
    ids = [f"https://example.com/{i}" for i in range(500)]
    assert seen.add_many(ids) == [True] * 500
    assert seen.add_many([*ids[:10], "https://example.com/new"]) == [False] * 10 + [True]
    assert seen.contains_many([ids[3], "https://example.com/never"]) == [True, False]


def test_publish_across_slots_is_once_per_stream(on_cluster: Cluster) -> None:
    """A worker that dies after the XADDs and before the article is marked published: its redelivery adds
    nothing to any stream, and the article then counts as published."""
    from worker.publish.article import Article, FeedRef
    from worker.publish.writer import Publisher

    publisher = Publisher(on_cluster, Settings())
    article = Article(id=AID, url="https://example.com/a", canonical_url="https://example.com/a",
                      feed=FeedRef(id="f1", url="https://example.com/feed"), site="example.com", title="A title",
                      text="Some text.", published=None, language="en", fetched_at="2026-12-01T12:00:00Z")
    streams = ["articles", "articles.sport", "{region}.news"]
    assert len({on_cluster.get_node_from_key(s).name for s in streams}) >= 2
    first = publisher.publish(article, streams)
    assert len(first) == 3
    keys, field = publisher.published.location(article.id)
    on_cluster.hdel(keys[0], field)  # as if the worker had died before marking it
    assert publisher.publish(article, streams) == first  # the same entries, none added
    assert [on_cluster.xlen(s) for s in streams] == [1, 1, 1]
    assert publisher.publish(article, streams) == []  # published: nothing to do
    assert json.loads(on_cluster.xrange("articles")[0][1][b"data"])["id"] == article.id


def test_a_one_shot_run_with_its_state_on_the_cluster(on_cluster: Cluster, http_server: LocalServer,
                                                       tmp_path: Path) -> None:
    """``ingest run --once`` as a user runs it against a cluster: every article published on the cluster's
    stream, the state spread over the three nodes, the host's keys in one slot."""
    site = build_site(http_server.url(""), n_articles=6, seed=41)
    http_server.routes.update(site.routes)
    feeds = tmp_path / "feeds.yaml"
    save_feeds(feeds, [Feed(url=http_server.url(site.feed_path), name="on the cluster")])
    out = subprocess.run([sys.executable, "-m", "worker.cli", "run", "--once", "--json", "--feeds", str(feeds)],
                         capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
                         env=os.environ | {"INGEST_BROKER_URL": broker_url()})
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout)["counts"]["published:articles"] == 6
    assert on_cluster.xlen("articles") == 6
    keys = [k.decode() for k in on_cluster.scan_iter(count=1000)]
    assert any(k.startswith("ingest:host:{127.0.0.1%3a") and k.endswith("}:latency") for k in keys), keys[:50]
    assert all(node.redis_connection.dbsize() > 0 for node in on_cluster.get_primaries())
