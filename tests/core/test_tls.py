"""A Redis reached over TLS with a password (``rediss://``): the whole pipeline runs, the password never shows.

Needs `openssl` and a redis-server built with TLS (Debian's is); skips otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from worker.core.redisconn import free_port, redis_server_binary

PASSWORD = "tls-s3cret-pw"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem"), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    port = free_port()
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(tmp_path / "cert.pem"), "--tls-key-file", str(tmp_path / "key.pem"),
         "--tls-ca-cert-file", str(tmp_path / "cert.pem"), "--tls-auth-clients", "no", "--requirepass", PASSWORD,
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={tmp_path / 'cert.pem'}"
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.skip("this redis-server has no TLS support")
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.RedisError:
                assert time.monotonic() < deadline, "TLS redis-server did not start"
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_demo_over_tls_with_password(tls_redis: str) -> None:
    out = subprocess.run([sys.executable, "-m", "worker.cli", "run", "--demo"], capture_output=True, text=True,
                         timeout=300, env=os.environ | {"REDIS_URL": tls_redis, "INGEST_LOG_FORMAT": "json"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert '"published:articles": 12' in out.stdout
    assert PASSWORD not in out.stdout and PASSWORD not in out.stderr
    assert redis.Redis.from_url(tls_redis).xlen("articles") == 12
