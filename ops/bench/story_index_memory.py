"""Redis memory the same-story index takes per article, on one node (on a Redis Cluster the same keys spread
over the slots: README, "State on Redis Cluster").

    .venv/bin/python ops/bench/story_index_memory.py [--articles N]

Runs on a throwaway redis-server; each article has its own title and text (400 words), its canonical URL and
an AMP URL, as the publish step remembers them. Prints the keys and bytes per article, last line key=value.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.dedup.test_dedup import aid, article_text, url
from worker.core.redisconn import RedisServer
from worker.core.settings import Settings
from worker.dedup.stories import StoryIndex


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=3000)
    n = parser.parse_args().articles
    server = RedisServer()
    try:
        r = redis.Redis.from_url(server.url)
        index = StoryIndex(r, Settings())
        pages = [(article_text(i, 400), f"Headline number {i} of the day") for i in range(n)]
        before = int(r.info("memory")["used_memory"])
        for i, (text, title) in enumerate(pages):
            index.check_and_remember(aid(i), title, text, url(i), alt_urls=[url(i, "amp.example.com")])
        used = int(r.info("memory")["used_memory"]) - before
        keys = int(r.dbsize())
        print(f"{n} articles: {keys} keys, {used} bytes")
        print(f"articles={n} keys_per_article={keys / n:.1f} bytes_per_article={used / n:.0f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
