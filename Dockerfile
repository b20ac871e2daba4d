# News-ingest worker image: one image for `ingest worker`, `ingest beat`, `ingest run` and `ingest stats`.
# Build: docker build -t news-ingest-worker:0.1.0 .
# The Python the tests run on (CI: 3.11.7), so the image runs what CI tested; the dependencies come pinned and
# hash-checked from requirements-prod.lock (no dev tools, no bundled redis-server: the image talks to REDIS_URL).
FROM python:3.11.7-slim-bookworm

# INGEST_FEEDS: the package resolves config/ next to itself, which is site-packages once installed.
# PROMETHEUS_MULTIPROC_DIR: pool children write their metrics there; the main process serves the sum.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    INGEST_FEEDS=/app/config/feeds.yaml \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus \
    INGEST_METRICS_PORT=9808

WORKDIR /app

# The locked dependencies first, in their own layer: a code change does not re-install them.
COPY requirements-prod.lock ./
RUN pip install --require-hashes -r requirements-prod.lock

COPY pyproject.toml README.md ./
COPY worker ./worker
# The package alone: its dependencies and its build backend (setuptools, wheel) are the locked ones above.
RUN pip install --no-deps --no-build-isolation . \
    && groupadd --system --gid 10001 ingest \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/ingest \
       --shell /usr/sbin/nologin ingest \
    && mkdir -p /tmp/prometheus && chown ingest:ingest /tmp/prometheus

COPY config ./config

USER 10001
# A writable working directory for whatever a command leaves in its cwd (e.g. beat's schedule file);
# the code and config under /app stay owned by root.
WORKDIR /home/ingest
EXPOSE 9808

# Liveness of the worker's metrics endpoint; beat and one-off commands override or disable it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9808/healthz', timeout=4)"

# Both stages as child processes (one machine); a fleet runs `ingest worker --stage download` and
# `ingest worker --stage extract` as separate services (docker-compose.yml, ops/k8s/).
CMD ["ingest", "worker"]
