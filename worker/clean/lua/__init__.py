"""The cleaning stage's Lua scripts, one file each, with their KEYS/ARGV contract at the top of the file."""

from __future__ import annotations

import functools
from pathlib import Path

_HERE = Path(__file__).resolve().parent


@functools.cache
def source(name: str) -> str:
    """The text of ``<name>.lua`` beside this module (read once per process)."""
    return (_HERE / f"{name}.lua").read_text(encoding="utf-8")
