"""The published message model and its documented JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

from worker.publish.article import Article


def test_schema_file_is_the_message_model() -> None:
    """The documented JSON Schema is generated from the model the publisher uses; they may not drift."""
    schema_path = Path(__file__).resolve().parents[2] / "worker/publish/schema/article.schema.json"
    schema = json.loads(schema_path.read_text())
    generated = Article.model_json_schema()
    assert schema["properties"] == generated["properties"] and schema["required"] == generated["required"]
