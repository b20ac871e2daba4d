"""Runtime settings: environment variables with the ``INGEST_`` prefix, an optional settings file, validated.

Every field is documented in the README's configuration table; keep the two in step.
"""

from __future__ import annotations

import ipaddress
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"

# Host limits for a fleet that fetches everything from one local host on purpose (tests, the demo, benchmarks):
# politeness there would only measure the limiter.
LOCAL_UNLIMITED_ENV = {"INGEST_HOST_RATE": "0", "INGEST_HOST_CONCURRENCY": "1000"}


def _settings_file() -> Path | None:
    raw = os.environ.get("INGEST_SETTINGS_FILE")
    if raw:
        return Path(raw)
    default = CONFIG_DIR / "settings.yaml"
    return default if default.exists() else None


class Settings(BaseSettings):
    """All tunables of the worker. Precedence: init kwargs > environment > settings file > defaults."""

    # extra="forbid": a misspelt key in the settings file is an error, not a setting silently left at its default
    # (unknown INGEST_* environment variables are not read at all)
    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="forbid", validate_default=True)

    # --- connections ---------------------------------------------------------------------------------
    # REDIS_URL (no prefix) is the conventional name; unset means "start an embedded Redis".
    redis_url: SecretStr | None = Field(default=None, validation_alias="REDIS_URL")
    # The Celery broker (queues, kombu's bookkeeping, the RedBeat lock): a plain Redis, since kombu has no
    # Cluster transport. Unset: the Redis of REDIS_URL (or the embedded one).
    broker_url: SecretStr | None = None
    # REDIS_URL names a node of a Redis Cluster: state keys carry hash tags and scripts stay within one slot
    redis_cluster: bool = False
    key_prefix: str = "ingest"

    # --- feeds and scheduling ---------------------------------------------------------------------------
    feeds: Path = CONFIG_DIR / "feeds.yaml"
    default_interval: float = 900.0  # seconds between polls of a feed whose publishing rate is not known yet
    min_interval: float = 60.0  # global floor of every feed's interval; a feed's min_interval can only raise it
    max_interval: float = 86400.0  # global ceiling (quiet feeds, feeds with live push); a feed's can only lower it
    interval_jitter: float = 0.1  # +-fraction of random spread on every delay, so feeds never fire together
    dispatch_every: float = 5.0  # seconds between beat's dispatch ticks
    dispatch_batch: int = 1000  # feeds claimed per tick at most
    dispatch_chunk: int = 20  # due feeds per poll task
    backoff_base: float = 60.0
    backoff_max: float = 6 * 3600.0
    seen_ttl_days: float = 30.0  # how long a seen entry (guid / canonical URL) is remembered

    # --- HTTP -------------------------------------------------------------------------------------------
    user_agent: str = "news-ingest-worker/0.1 (+https://github.com/news-ingest/worker)"
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    total_timeout: float = 30.0  # wall-clock limit on one download, slow-drip servers included
    max_feed_bytes: int = 5 * 1024 * 1024
    max_page_bytes: int = 5 * 1024 * 1024
    max_redirects: int = 5
    allow_private_networks: bool = False
    # networks (CIDRs) reachable even so, e.g. an internal feed mirror: the guard stays on for everything else
    allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # --- politeness (per host, shared by every worker through Redis) -----------------------------------------
    host_concurrency: int = Field(default=2, ge=1)  # requests in flight to one host, fleet-wide
    host_rate: float = Field(default=1.0, ge=0)  # requests per second to one host, fleet-wide; 0: no rate limit
    # longest a download thread sleeps for its host's turn; beyond it the work is put off with its turn reserved
    host_wait_max: float = Field(default=0.0, ge=0)
    retry_after_scope: Literal["feed", "host"] = "feed"  # what a 429/503 Retry-After pauses (Feed may override)
    robots_obey: bool = True  # check robots.txt before fetching an article page (Feed.robots may turn it off)
    robots_cache_seconds: float = Field(default=86400.0, gt=0)
    robots_user_agent: str = ""  # product token matched in robots.txt; empty: the product of user_agent

    # --- cleaning and dedup -----------------------------------------------------------------------------
    clean_hold_seconds: float = 20.0  # how long a page of a barely known site waits for its batch
    clean_min_pages: int = 5  # pages a site must have shown before its articles skip the hold
    near_dup_threshold: float = 0.85  # estimated Jaccard above which two texts are one story
    title_window_hours: float = 48.0
    duplicate_policy: Literal["drop", "mark"] = "mark"
    duplicate_stream: str = "articles.duplicates"
    site_memory_bucket_hours: float = 24.0  # site line memory is kept in buckets of this length...
    site_memory_buckets: int = 3  # ...and this many are read and kept: sidebars are forgotten after that
    # line, slot and headline fingerprints one bucket of one site holds (rounded up to a power of two); a full
    # bucket replaces lines seen on one page only
    site_memory_max_lines: int = 16_384
    site_memory_max_pages: int = 5_000  # pages one bucket of one site learns from; later ones are not learnt
    site_titles_max: int = 5_000  # unused since headlines share the line buckets; kept so settings files still load
    site_titles_ttl_hours: float = 72.0  # headlines count in the live buckets this recent (whole buckets)
    fleet_memory_max_lines: int = 200_000  # distinct line hashes one bucket of the fleet-wide prior may hold

    # --- publishing -------------------------------------------------------------------------------------
    default_stream: str = "articles"
    stream_maxlen: int = 100_000
    dead_letter_stream: str = "ingest.dead-letters"
    routes: list[dict[str, Any]] = Field(default_factory=list)  # see README "Routing"

    # --- push (WebSub) ----------------------------------------------------------------------------------
    websub_callback_url: str | None = None  # public base URL of `ingest websub serve`; None: push is off
    websub_secret: SecretStr | None = None  # master secret the per-feed HMAC secrets derive from
    websub_port: int = 9809
    websub_lease_seconds: int = Field(default=10 * 86400, gt=0)  # lease asked of hubs (they may grant less)

    # --- worker -----------------------------------------------------------------------------------------
    concurrency: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1)  # CPU-stage processes
    download_concurrency: int = Field(default=200, ge=1)  # download-stage threads: requests in flight per worker
    page_ttl: float = Field(default=3600.0, gt=0)  # seconds a downloaded page waits in Redis for extraction
    task_time_limit: float = 120.0
    visibility_timeout: float = 600.0
    metrics_port: int = 9808  # 0 disables the metrics endpoint
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"

    @field_validator("redis_url", "broker_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return value or None

    @model_validator(mode="after")
    def _cluster_needs_urls(self) -> Settings:
        # The embedded server is a single node, and kombu cannot use a cluster node as its broker.
        if self.redis_cluster and self.redis_url is None:
            raise ValueError("state on Redis Cluster (INGEST_REDIS_CLUSTER=true) needs REDIS_URL: any node of the "
                             "cluster")
        if self.redis_cluster and self.broker_url is None:
            raise ValueError("state on Redis Cluster (INGEST_REDIS_CLUSTER=true) needs INGEST_BROKER_URL: the "
                             "Celery broker must be a plain Redis (kombu has no Cluster transport)")
        return self

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        # INGEST_ALLOWED_NETWORKS=10.1.0.0/16,192.168.5.7 (or a JSON list) from the environment
        if isinstance(value, str):
            value = json.loads(value) if value.lstrip().startswith("[") else \
                [part.strip() for part in value.split(",") if part.strip()]
        for net in value or ():
            ipaddress.ip_network(str(net), strict=False)  # ValueError names the bad one
        return value

    @field_validator("websub_callback_url", "websub_secret", mode="before")
    @classmethod
    def _websub_empty_is_none(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().rstrip("/") if value.startswith(("http://", "https://")) else value.strip()
        return value or None

    @field_validator("websub_callback_url")
    @classmethod
    def _websub_callback_is_http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("websub_callback_url must be an http(s) URL")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _settings_file()
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


class SettingsError(ValueError):
    """The settings cannot be used; the message names every problem (variable or file key, value, why)."""


def env_name(field: str) -> str:
    return "REDIS_URL" if field == "redis_url" else f"INGEST_{field.upper()}"


def _describe(exc: ValidationError, path: Path | None) -> str:
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        what = str(error["msg"]).removeprefix("Value error, ")
        what = what[:1].lower() + what[1:]
        if not error["loc"]:  # a rule across settings: its message names them (the input would show secrets)
            problems.append(what)
            continue
        if error["type"] == "extra_forbidden":
            problems.append(f"{field} in {path}: unknown setting")
            continue
        name = env_name(str(error["loc"][0])) if error["loc"] else field
        secret = "secret" in field or field in ("redis_url", "broker_url")  # never echo a credential
        if name in os.environ:  # the environment wins over the file, so the bad value came from there
            problems.append(f"{name}: {what}" if secret else f"{name}={os.environ[name]!r}: {what}")
        else:
            value = "" if secret else f"={error.get('input')!r}"
            problems.append(f"{field}{value}{f' in {path}' if path is not None else ''}: {what}")
    return "; ".join(problems)


def load_settings() -> Settings:
    """The settings, or a SettingsError listing every problem at once (bad values in the environment or the
    settings file, unknown keys in the file, a settings file that is missing or not YAML)."""
    path = _settings_file()
    if path is not None and not path.is_file():
        raise SettingsError(f"settings file {path} (INGEST_SETTINGS_FILE) does not exist")
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(f"invalid settings: {_describe(exc, path)}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SettingsError(f"settings file {path} is not valid YAML: {problem}{where}") from exc
    except (TypeError, ValueError) as exc:  # a YAML document that is not a mapping of settings
        raise SettingsError(f"settings file {path}: expected 'name: value' lines, one per setting") from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
