"""Settings: environment and file sources, validation, and the README documenting every option."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from worker.core.settings import Settings, SettingsError, load_settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_documented_in_the_readme() -> None:
    for name in Settings.model_fields:
        env = "REDIS_URL" if name == "redis_url" else f"INGEST_{name.upper()}"
        assert f"`{env}`" in README, f"{env} is not documented in README.md"


def test_environment_then_file_then_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("default_stream: from-file\nstream_maxlen: 7\nroutes:\n  - {stream: fr, languages: [fr]}\n")
    monkeypatch.setenv("INGEST_SETTINGS_FILE", str(path))
    monkeypatch.setenv("INGEST_STREAM_MAXLEN", "9")
    s = Settings()
    assert (s.default_stream, s.stream_maxlen, s.routes) == ("from-file", 9, [{"stream": "fr", "languages": ["fr"]}])


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_DUPLICATE_POLICY", "keep-everything")
    with pytest.raises(ValidationError):
        Settings()


def test_redis_password_is_not_shown() -> None:
    s = Settings(REDIS_URL="redis://:hunter2@redis:6379/0")  # type: ignore[call-arg]
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())



def test_default_feed_list_is_the_projects_config_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INGEST_FEEDS", raising=False)
    root = Path(__file__).resolve().parents[2]
    assert Settings().feeds == root / "config" / "feeds.yaml"
    assert Settings().feeds.is_file()
def test_every_problem_is_listed_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("stream_maxlen: lots\nconcurency: 4\n")  # a bad value and a misspelt name
    monkeypatch.setenv("INGEST_SETTINGS_FILE", str(path))
    monkeypatch.setenv("INGEST_CONCURRENCY", "abc")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert "INGEST_CONCURRENCY='abc'" in message and f"stream_maxlen='lots' in {path}" in message
    assert f"concurency in {path}: unknown setting" in message and "\n" not in message


def test_a_settings_file_that_cannot_be_used_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "settings.yaml"
    monkeypatch.setenv("INGEST_SETTINGS_FILE", str(path))
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings()
    path.write_text("routes: [\n")
    with pytest.raises(SettingsError, match=r"is not valid YAML: .* at line 2, column 1"):
        load_settings()
    path.write_text("- a list\n")
    with pytest.raises(SettingsError, match="expected 'name: value' lines"):
        load_settings()


def test_secrets_are_not_echoed_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_WEBSUB_SECRET", "hunter2")
    monkeypatch.setenv("INGEST_WEBSUB_LEASE_SECONDS", "0")
    monkeypatch.setenv("INGEST_DUPLICATE_POLICY", "keep-everything")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "INGEST_WEBSUB_LEASE_SECONDS='0'" in str(raised.value) and "hunter2" not in str(raised.value)


def test_a_cluster_needs_both_urls_and_no_secret_is_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """State on a cluster needs REDIS_URL and a plain-Redis broker: one line names what is missing, and never
    echoes the URLs' passwords (a rule across settings would otherwise print every input)."""
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@node1:7000/0")
    monkeypatch.setenv("INGEST_REDIS_CLUSTER", "true")
    monkeypatch.delenv("INGEST_BROKER_URL", raising=False)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "needs INGEST_BROKER_URL" in str(info.value) and "hunter2" not in str(info.value)
    monkeypatch.setenv("INGEST_BROKER_URL", "redis://:s3cret@broker:6379/0")
    settings = load_settings()
    assert settings.redis_cluster and "s3cret" not in repr(settings)
