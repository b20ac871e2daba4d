"""Settings: environment and file sources, validation, and the README documenting every option."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from worker.core.settings import Settings

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
